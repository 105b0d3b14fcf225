//! The cgroup path parser (`ContainerRef::from_cgroup_path`) on arbitrary text, as read from
//! `/proc/PID/cgroup` (kubelet with containerd, CRI-O or Docker; cgroup v1 and v2; systemd and cgroupfs
//! drivers; host processes).
//!
//! Asserts: no panic; a container id found is 64 hex digits taken from the path, a pod UID 36 hex
//! digits and dashes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::discovery::ContainerRef;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    vigil::fuzzing::check_container(&path, &ContainerRef::from_cgroup_path(&path));
});
