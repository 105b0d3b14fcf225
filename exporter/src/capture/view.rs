//! What capture needs to know of discovery, and nothing more: whether a process is published, still
//! provisional, not selected or gone, the service and cgroup placement its labels come from, and
//! whether its TLS plaintext is read. The
//! pairing logic is tested against a plain implementation of it, with no real processes.

use crate::discovery::{ContainerRef, Discovery, Publication, ServiceIdentity};

/// Discovery's processes as capture sees them.
pub trait ProcessView {
    /// Whether what was captured from `tgid` may be published now.
    fn publication(&self, tgid: u32) -> Publication;
    /// The service identity and the cgroup placement of captured process `tgid`.
    fn service_of(&self, tgid: u32) -> Option<(&ServiceIdentity, &ContainerRef)>;
    /// Whether vigil reads the TLS plaintext of captured process `tgid` (its TLS probes are attached).
    fn reads_tls(&self, tgid: u32) -> bool;
}

impl ProcessView for Discovery {
    fn publication(&self, tgid: u32) -> Publication {
        Discovery::publication(self, tgid)
    }

    fn service_of(&self, tgid: u32) -> Option<(&ServiceIdentity, &ContainerRef)> {
        Discovery::service_of(self, tgid)
    }

    fn reads_tls(&self, tgid: u32) -> bool {
        Discovery::reads_tls(self, tgid)
    }
}
