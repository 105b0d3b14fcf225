//! A process's service identity as discovery reads it: its executable's name, and what its environment
//! says in OpenTelemetry's terms: `OTEL_SERVICE_NAME`, and `service.name` / `service.namespace` in
//! `OTEL_RESOURCE_ATTRIBUTES` (a comma-separated `key=value` list with percent-encoded values, as the
//! OpenTelemetry SDKs read it). Capture resolves the `service_name` and `service_namespace` labels from
//! it and the process's pod (see `capture::labels`).

use std::{collections::HashMap, ffi::OsString, path::Path};

use super::process::ProcessInfo;

/// What names the service a process belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// Its executable's file name (else its command's): the last resort.
    pub executable: String,
    /// `OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`.
    pub otel_name: Option<String>,
    /// `service.namespace` of `OTEL_RESOURCE_ATTRIBUTES`.
    pub otel_namespace: Option<String>,
}

impl ServiceIdentity {
    /// The identity of `info` with the OpenTelemetry variables of its `environment`.
    pub(super) fn of(info: &ProcessInfo, environment: &HashMap<OsString, OsString>) -> Self {
        let variable = |name: &str| {
            environment
                .get(&OsString::from(name))
                .and_then(|value| value.to_str())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        let attributes = variable("OTEL_RESOURCE_ATTRIBUTES")
            .map(resource_attributes)
            .unwrap_or_default();
        let attribute = |key: &str| {
            attributes
                .iter()
                .rev()
                .find(|(name, value)| name == key && !value.is_empty())
                .map(|(_, value)| value.clone())
        };
        ServiceIdentity {
            executable: executable_name(info),
            otel_name: variable("OTEL_SERVICE_NAME")
                .map(str::to_owned)
                .or_else(|| attribute("service.name")),
            otel_namespace: attribute("service.namespace"),
        }
    }

    /// The identity of a process whose environment could not be read: its executable only.
    pub(super) fn executable_only(info: &ProcessInfo) -> Self {
        ServiceIdentity {
            executable: executable_name(info),
            ..ServiceIdentity::default()
        }
    }
}

/// A process's executable's file name, else its command's.
fn executable_name(info: &ProcessInfo) -> String {
    let program = info
        .exe
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .or_else(|| {
            let command = info.cmdline.split(' ').next()?;
            command.rsplit('/').next()
        })
        .filter(|name| !name.is_empty());
    program.unwrap_or("unknown").to_owned()
}

/// The `key=value` pairs of an `OTEL_RESOURCE_ATTRIBUTES` value, values percent-decoded; malformed
/// pairs are skipped (the SDKs discard them too).
pub(crate) fn resource_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

/// `%XX` sequences decoded (invalid ones kept as written); the result read as UTF-8, lossily.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::discovery::{ContainerRef, ProcessIdentity};

    fn info() -> ProcessInfo {
        ProcessInfo {
            identity: ProcessIdentity {
                pid: 1,
                start_ticks: 1,
            },
            parent_pid: 0,
            ns_pid: None,
            exe: Some(PathBuf::from("/usr/bin/node")),
            cmdline: "node server.js".into(),
            arguments: 1,
            cgroup: None,
            container: ContainerRef::default(),
        }
    }

    fn identity(variables: &[(&str, &str)]) -> ServiceIdentity {
        let environment = variables
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect();
        ServiceIdentity::of(&info(), &environment)
    }

    #[test]
    fn otel_service_name_wins_over_the_resource_attributes_and_the_executable_is_kept() {
        let both = identity(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=cart,service.namespace=shop",
            ),
        ]);
        assert_eq!(both.otel_name.as_deref(), Some("checkout"));
        assert_eq!(both.otel_namespace.as_deref(), Some("shop"));
        assert_eq!(both.executable, "node");
        let attributes = identity(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            " deployment.environment=prod , service.name=my%20cart,service.namespace=",
        )]);
        assert_eq!(attributes.otel_name.as_deref(), Some("my cart"));
        assert_eq!(
            attributes.otel_namespace, None,
            "an empty value is no value"
        );
        assert_eq!(identity(&[]), ServiceIdentity::executable_only(&info()));
    }

    #[test]
    fn malformed_attributes_are_skipped_and_bad_escapes_kept() {
        assert_eq!(
            resource_attributes("broken,=x,service.name=a%2Cb,key=100%"),
            [
                ("service.name".to_owned(), "a,b".to_owned()),
                ("key".to_owned(), "100%".to_owned()),
            ]
        );
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
