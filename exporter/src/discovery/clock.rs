//! The boot clock (`CLOCK_BOOTTIME`, the clock of the kernel's event timestamps) and process start
//! times on it.

use super::process::ProcessIdentity;

/// When `identity` started, on the boot clock (to the resolution of clock ticks).
pub(super) fn start_boot_ns(identity: ProcessIdentity, ticks_per_second: u64) -> u64 {
    (u128::from(identity.start_ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1))) as u64
}

/// `CLOCK_BOOTTIME` in nanoseconds: the clock of `bpf_ktime_get_boot_ns`.
pub(super) fn boot_time_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
