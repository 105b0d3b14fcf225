//! The privilege check at start: vigil refuses to run without the capabilities it needs, and says which
//! ones are missing, instead of failing later at the first eBPF load or /proc read.

use std::path::Path;

/// A capability vigil needs, with the one that can stand in for it (`CAP_SYS_ADMIN` covers the eBPF ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub capability: &'static str,
    bit: u32,
    alternative: Option<(&'static str, u32)>,
    pub needed_for: &'static str,
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What vigil needs. With a user namespace or an unprivileged user none of these are effective.
pub const REQUIREMENTS: [Requirement; 4] = [
    Requirement {
        capability: "CAP_BPF",
        bit: CAP_BPF,
        alternative: Some(("CAP_SYS_ADMIN", CAP_SYS_ADMIN)),
        needed_for: "loading eBPF programs and creating maps",
    },
    Requirement {
        capability: "CAP_PERFMON",
        bit: CAP_PERFMON,
        alternative: Some(("CAP_SYS_ADMIN", CAP_SYS_ADMIN)),
        needed_for: "attaching tracepoints",
    },
    Requirement {
        capability: "CAP_SYS_PTRACE",
        bit: CAP_SYS_PTRACE,
        alternative: None,
        needed_for: "reading /proc/PID/exe of other users' processes",
    },
    Requirement {
        capability: "CAP_DAC_READ_SEARCH",
        bit: CAP_DAC_READ_SEARCH,
        alternative: None,
        needed_for: "reading /proc entries that are not world-readable",
    },
];

/// vigil lacks capabilities it needs.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "vigil lacks {}; run it as root, or grant these capabilities (Kubernetes: securityContext.capabilities.add)",
        describe(.0)
    )]
    Missing(Vec<Requirement>),
    #[error("cannot read the effective capabilities from {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

fn describe(missing: &[Requirement]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|requirement| match requirement.alternative {
            Some((alternative, _)) => format!(
                "{} (or {alternative}) for {}",
                requirement.capability, requirement.needed_for
            ),
            None => format!("{} for {}", requirement.capability, requirement.needed_for),
        })
        .collect();
    parts.join(", ")
}

/// The requirements an effective capability mask (`CapEff` in /proc/self/status) does not meet.
pub fn missing(effective: u64) -> Vec<Requirement> {
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    REQUIREMENTS
        .into_iter()
        .filter(|requirement| {
            !has(requirement.bit) && !requirement.alternative.is_some_and(|(_, bit)| has(bit))
        })
        .collect()
}

/// Checks this process's effective capabilities, read from `<procfs>/self/status`.
pub fn check(procfs: &Path) -> Result<(), PrivilegeError> {
    let path = procfs.join("self/status");
    let unreadable = |reason: String| PrivilegeError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let status = std::fs::read_to_string(&path).map_err(|error| unreadable(error.to_string()))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .ok_or_else(|| unreadable("no CapEff line".to_owned()))?;
    let effective = u64::from_str_radix(effective.trim(), 16)
        .map_err(|error| unreadable(format!("CapEff is not hexadecimal: {error}")))?;
    let missing = missing(effective);
    match missing.is_empty() {
        true => Ok(()),
        false => Err(PrivilegeError::Missing(missing)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        assert!(missing(0x000001ffffffffff).is_empty());
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon_only() {
        let mask = 1 << CAP_SYS_ADMIN | 1 << CAP_SYS_PTRACE | 1 << CAP_DAC_READ_SEARCH;
        assert!(missing(mask).is_empty());
        let names: Vec<_> = missing(1 << CAP_SYS_ADMIN)
            .iter()
            .map(|r| r.capability)
            .collect();
        assert_eq!(names, ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]);
    }

    #[test]
    fn message_names_each_missing_capability() {
        let mask = 1 << CAP_PERFMON | 1 << CAP_SYS_PTRACE | 1 << CAP_DAC_READ_SEARCH;
        let message = PrivilegeError::Missing(missing(mask)).to_string();
        assert!(
            message.contains("CAP_BPF (or CAP_SYS_ADMIN) for loading eBPF programs"),
            "{message}"
        );
        assert!(!message.contains("CAP_PERFMON"), "{message}");
    }
}
