//! Container id and pod UID from a cgroup v2 path, for the kubelet's systemd and cgroupfs layouts and the
//! containerd, CRI-O and docker runtimes:
//!
//! - `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, _ for ->.slice/cri-containerd-<id>.scope`
//! - `/kubepods/burstable/pod<uid>/<id>` (cgroupfs), `/kubepods/pod<uid>/<id>` (guaranteed QoS)
//! - `crio-<id>.scope`, `docker-<id>.scope`, `/docker/<id>`
//!
//! `<id>` is 64 hex digits. A runtime's helper cgroups (`crio-conmon-<id>.scope`) are not containers.

use serde::Serialize;

/// Where a process runs, as its cgroup says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    /// 64 hex digits, without a runtime prefix.
    pub container_id: Option<String>,
    /// The pod UID with dashes (`0c3a…-…`), when the cgroup is a kubelet pod's.
    pub pod_uid: Option<String>,
}

impl ContainerRef {
    /// Parses a cgroup path; an unrecognised path (a host process) gives neither id.
    pub fn from_cgroup_path(path: &str) -> ContainerRef {
        let segments: Vec<&str> = path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        let pod_uid = segments.iter().find_map(|segment| pod_uid_of(segment));
        let container_id = segments.last().and_then(|segment| container_id_of(segment));
        ContainerRef {
            container_id,
            pod_uid,
        }
    }
}

fn pod_uid_of(segment: &str) -> Option<String> {
    let segment = segment.strip_suffix(".slice").unwrap_or(segment);
    let start = segment.rfind("pod")? + "pod".len();
    let uid = segment[start..].replace('_', "-");
    let is_uid = uid.len() == 36
        && uid.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    is_uid.then_some(uid)
}

fn container_id_of(segment: &str) -> Option<String> {
    let id = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = [
        "cri-containerd-",
        "crio-",
        "docker-",
        "containerd-",
        "cri-o-",
    ]
    .iter()
    .find_map(|prefix| id.strip_prefix(prefix))
    .unwrap_or(id);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b2cd7ad5ea4a4f0bcd7e3f5a4e3b0e4ad1d7a4e3e55f6e6d1c4b7a8c9d0e1f2";
    const UID: &str = "0c3a8a1e-6c53-4b8e-9b7e-2f8f1d2c3b4a";

    fn parsed(path: &str) -> (Option<String>, Option<String>) {
        let reference = ContainerRef::from_cgroup_path(path);
        (reference.container_id, reference.pod_uid)
    }

    #[test]
    fn kubelet_systemd_layout_with_containerd() {
        let uid = UID.replace('-', "_");
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parsed(&path), (Some(ID.into()), Some(UID.into())));
    }

    #[test]
    fn kubelet_cgroupfs_layouts() {
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            (Some(ID.into()), Some(UID.into()))
        );
        assert_eq!(
            parsed(&format!("/kubepods/pod{UID}/{ID}")),
            (Some(ID.into()), Some(UID.into()))
        );
        assert_eq!(
            parsed(&format!("/kubepods/besteffort/pod{UID}/{ID}")),
            (Some(ID.into()), Some(UID.into()))
        );
    }

    #[test]
    fn crio_and_docker() {
        let uid = UID.replace('-', "_");
        let crio = format!("/kubepods.slice/kubepods-pod{uid}.slice/crio-{ID}.scope");
        assert_eq!(parsed(&crio), (Some(ID.into()), Some(UID.into())));
        assert_eq!(
            parsed(&format!("/system.slice/docker-{ID}.scope")),
            (Some(ID.into()), None)
        );
        assert_eq!(parsed(&format!("/docker/{ID}")), (Some(ID.into()), None));
    }

    #[test]
    fn host_processes_and_runtime_helpers_are_not_containers() {
        assert_eq!(parsed("/"), (None, None));
        assert_eq!(parsed("/system.slice/sshd.service"), (None, None));
        assert_eq!(
            parsed("/user.slice/user-0.slice/session-1.scope"),
            (None, None)
        );
        let conmon = format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(parsed(&conmon), (None, Some(UID.into())));
        // A pod cgroup itself (the pause process's parent) has a pod but no container.
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{UID}")),
            (None, Some(UID.into()))
        );
    }
}
