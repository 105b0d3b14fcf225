//! TLS probes for the captured processes: discovery hands the kernel's [`TlsProbes`] the processes it
//! captures (provisional included) on every drain tick, and asks it to look again at those without a
//! TLS library, or whose attachment failed, on every heartbeat. What each process got is its `tls`
//! field in `/debug/discovery`.

use std::collections::BTreeSet;

use super::Discovery;
use crate::kernel::{ProcessTls, TlsProbes};

impl Discovery {
    /// Attaches TLS probes for the processes this discovery captures.
    pub fn with_tls(mut self, tls: TlsProbes) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Brings the TLS probes in line with the captured processes (`recheck`: see [`TlsProbes::sync`]).
    pub(super) fn sync_tls(&mut self, recheck: bool) {
        let Some(tls) = &mut self.tls else {
            return;
        };
        let captured: BTreeSet<u32> = self
            .decisions
            .iter()
            .filter(|(_, decision)| decision.state.is_captured())
            .map(|(tgid, _)| *tgid)
            .collect();
        tls.sync(&captured, recheck);
    }

    /// Whether vigil reads the TLS plaintext of `tgid`.
    pub fn reads_tls(&self, tgid: u32) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.reads(tgid))
    }

    /// The TLS probes of `tgid`, as `/debug/discovery` shows them.
    pub(super) fn tls_state(&self, tgid: u32) -> Option<String> {
        self.tls
            .as_ref()
            .and_then(|tls| tls.state(tgid))
            .map(ProcessTls::describe)
    }
}
