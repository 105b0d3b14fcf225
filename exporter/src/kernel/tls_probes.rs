//! The TLS uprobes (`exporter-ebpf/src/tls.rs`), attached per distinct binary that captured processes
//! use for TLS: the `libssl.so.*` a process maps (`/proc/PID/maps`), or its executable when that links
//! OpenSSL statically and exports its API (node). One uprobe set serves every process mapping the
//! binary (the programs test the process filter first); it is attached when the first captured process
//! using it is seen, and detached once no captured process has used it for [`UNUSED_BINARY_LINGER`]
//! (short-lived processes of the same binary coming and going would otherwise attach and detach it
//! each time, and registering a uprobe walks every process that maps the file).
//!
//! Discovery calls [`TlsProbes::sync`] with the captured processes on every drain tick (a process just
//! captured, provisional included, gets its probes before it serves much) and, with `recheck`, on
//! every heartbeat, when processes without a library are looked at again (Python maps `libssl` only
//! when it imports `ssl`) and failed attachments are retried.
//!
//! Metrics: `vigil_probes_attached{program}` is, for these programs, the number of binaries they are
//! attached to; `vigil_probe_errors_total{program,stage="attach"}` counts failures (with the reason in
//! vigil's log and the process's `tls` field in `/debug/discovery`).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope},
    },
};
use object::{Object, ObjectSection, ObjectSymbol};
use vigil_common::io::programs;

use super::KernelMetrics;

/// How long a binary keeps its probes after its last captured process is gone.
pub const UNUSED_BINARY_LINGER: Duration = Duration::from_secs(60);

/// What is attached to a TLS binary: (program, symbol, required). A binary without a required symbol
/// is not a TLS library vigil reads; the `_ex` variants are OpenSSL 1.1.1 and later.
const ATTACH_POINTS: [(&str, &str, bool); 9] = [
    (programs::SSL_CALL, "SSL_read", true),
    (programs::SSL_READ_RETURN, "SSL_read", true),
    (programs::SSL_CALL, "SSL_write", true),
    (programs::SSL_WRITE_RETURN, "SSL_write", true),
    (programs::SSL_FREE, "SSL_free", true),
    (programs::SSL_CALL_EX, "SSL_read_ex", false),
    (programs::SSL_READ_RETURN, "SSL_read_ex", false),
    (programs::SSL_CALL_EX, "SSL_write_ex", false),
    (programs::SSL_WRITE_RETURN, "SSL_write_ex", false),
];

/// The TLS programs, loaded with the rest of the object, attached on demand.
pub const PROGRAMS: [&str; 5] = [
    programs::SSL_CALL,
    programs::SSL_CALL_EX,
    programs::SSL_READ_RETURN,
    programs::SSL_WRITE_RETURN,
    programs::SSL_FREE,
];

/// A binary file, by device and inode (the same library seen through different paths, or through
/// different containers' roots, is one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct BinaryId {
    device: u64,
    inode: u64,
}

/// A binary with the TLS probes attached, and the captured processes using it.
struct AttachedBinary {
    links: Vec<(&'static str, UProbeLinkId)>,
    users: BTreeSet<u32>,
    /// Since when no captured process uses it.
    unused_since: Option<Instant>,
}

/// The TLS probes of one captured process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessTls {
    /// Attached to this binary (the path as the process sees it).
    Attached(PathBuf),
    /// It maps no TLS library vigil reads (it may load one later, or use another TLS stack).
    NoLibrary,
    /// Attaching failed; tried again on the next heartbeat.
    Failed(String),
}

impl ProcessTls {
    /// As `/debug/discovery` shows it.
    pub fn describe(&self) -> String {
        match self {
            ProcessTls::Attached(path) => format!("attached to {}", path.display()),
            ProcessTls::NoLibrary => "no OpenSSL library mapped".to_owned(),
            ProcessTls::Failed(error) => format!("attach failed (retried): {error}"),
        }
    }
}

/// The TLS uprobes and where they are attached.
pub struct TlsProbes {
    ebpf: Arc<Mutex<Ebpf>>,
    /// Whether the programs loaded (they are attached only if so).
    loaded: bool,
    binaries: HashMap<BinaryId, AttachedBinary>,
    /// Binaries found without the required symbols, so that they are not parsed again.
    without_tls: HashSet<BinaryId>,
    processes: HashMap<u32, (Option<BinaryId>, ProcessTls)>,
    metrics: KernelMetrics,
}

impl TlsProbes {
    pub(super) fn new(ebpf: Arc<Mutex<Ebpf>>, loaded: bool, metrics: KernelMetrics) -> Self {
        TlsProbes {
            ebpf,
            loaded,
            binaries: HashMap::new(),
            without_tls: HashSet::new(),
            processes: HashMap::new(),
            metrics,
        }
    }

    /// Brings the probes in line with the captured processes: attaches for those new, releases those
    /// gone; with `recheck`, looks again at processes without a library or whose attachment failed, and
    /// detaches the binaries unused for [`UNUSED_BINARY_LINGER`].
    pub fn sync(&mut self, captured: &BTreeSet<u32>, recheck: bool) {
        if !self.loaded {
            return;
        }
        if recheck {
            self.detach_unused(Instant::now());
        }
        let gone: Vec<u32> = self
            .processes
            .keys()
            .filter(|tgid| !captured.contains(tgid))
            .copied()
            .collect();
        for tgid in gone {
            self.release(tgid);
        }
        for &tgid in captured {
            let look = match self.processes.get(&tgid) {
                None => true,
                Some((_, ProcessTls::Attached(_))) => false,
                Some(_) => recheck,
            };
            if look {
                let state = self.attach_process(tgid);
                self.processes.insert(tgid, state);
            }
        }
    }

    /// The TLS probes of `tgid`, when it is captured.
    pub fn state(&self, tgid: u32) -> Option<&ProcessTls> {
        self.processes.get(&tgid).map(|(_, state)| state)
    }

    /// Whether vigil reads the TLS plaintext of `tgid`.
    pub fn reads(&self, tgid: u32) -> bool {
        matches!(self.state(tgid), Some(ProcessTls::Attached(_)))
    }

    fn attach_process(&mut self, tgid: u32) -> (Option<BinaryId>, ProcessTls) {
        let binary = match find_binary(tgid) {
            Ok(binary) => binary,
            Err(error) => return (None, ProcessTls::Failed(error)),
        };
        let id = binary.id;
        if let Some(attached) = self.binaries.get_mut(&id) {
            attached.users.insert(tgid);
            attached.unused_since = None;
            return (Some(id), ProcessTls::Attached(binary.path));
        }
        if self.without_tls.contains(&id) {
            return (None, ProcessTls::NoLibrary);
        }
        match self.attach_binary(&binary) {
            Ok(links) => {
                tracing::info!(tgid, binary = %binary.path.display(), "TLS probes attached");
                self.binaries.insert(
                    id,
                    AttachedBinary {
                        links,
                        users: BTreeSet::from([tgid]),
                        unused_since: None,
                    },
                );
                self.update_gauges();
                (Some(id), ProcessTls::Attached(binary.path))
            }
            // An executable without OpenSSL's API: it has no TLS vigil reads.
            Err(AttachError::MissingSymbol(_)) if !binary.is_library => {
                self.without_tls.insert(id);
                (None, ProcessTls::NoLibrary)
            }
            Err(error) => {
                tracing::warn!(tgid, binary = %binary.path.display(), %error, "TLS probes not attached");
                (None, ProcessTls::Failed(error.to_string()))
            }
        }
    }

    /// Attaches every point to the binary; on a failure, detaches what it attached. The file is
    /// attached through vigil's own descriptor of it (`/proc/self/fd/N`), which stays valid when the
    /// process it was found through exits meanwhile.
    fn attach_binary(
        &mut self,
        binary: &Binary,
    ) -> Result<Vec<(&'static str, UProbeLinkId)>, AttachError> {
        let offsets = symbol_offsets(&binary.file)?;
        let target = PathBuf::from(format!("/proc/self/fd/{}", binary.file.as_raw_fd()));
        let mut ebpf = self.ebpf.lock().expect("eBPF object lock");
        let mut links = Vec::new();
        for (program, symbol, required) in ATTACH_POINTS {
            let Some(&offset) = offsets.get(symbol) else {
                if required {
                    detach_all(&mut ebpf, links);
                    return Err(AttachError::MissingSymbol(symbol));
                }
                continue;
            };
            let result = uprobe(&mut ebpf, program).and_then(|probe| {
                probe
                    .attach(
                        UProbeAttachLocation::AbsoluteOffset(offset),
                        &target,
                        UProbeScope::AllProcesses,
                    )
                    .map_err(|error| AttachError::Attach(program, symbol, error.to_string()))
            });
            match result {
                Ok(link) => links.push((program, link)),
                Err(error) => {
                    self.metrics
                        .probe_errors
                        .with_label_values(&[program, "attach"])
                        .inc();
                    detach_all(&mut ebpf, links);
                    return Err(error);
                }
            }
        }
        Ok(links)
    }

    /// `tgid` is no longer captured: the binary it used loses a user (and, with its last, starts to
    /// linger).
    fn release(&mut self, tgid: u32) {
        let Some((Some(id), _)) = self.processes.remove(&tgid) else {
            return;
        };
        if let Some(binary) = self.binaries.get_mut(&id) {
            binary.users.remove(&tgid);
            if binary.users.is_empty() {
                binary.unused_since = Some(Instant::now());
            }
        }
    }

    /// Detaches the binaries no captured process has used for [`UNUSED_BINARY_LINGER`].
    fn detach_unused(&mut self, now: Instant) {
        let unused: Vec<BinaryId> = self
            .binaries
            .iter()
            .filter(|(_, binary)| {
                binary.unused_since.is_some_and(|since| {
                    now.saturating_duration_since(since) >= UNUSED_BINARY_LINGER
                })
            })
            .map(|(id, _)| *id)
            .collect();
        if unused.is_empty() {
            return;
        }
        let mut ebpf = self.ebpf.lock().expect("eBPF object lock");
        for id in unused {
            let binary = self.binaries.remove(&id).expect("present");
            detach_all(&mut ebpf, binary.links);
            tracing::info!(
                device = id.device,
                inode = id.inode,
                "TLS probes detached: no captured process used the binary for a minute"
            );
        }
        drop(ebpf);
        self.update_gauges();
    }

    fn update_gauges(&self) {
        for program in PROGRAMS {
            let binaries = self
                .binaries
                .values()
                .filter(|binary| binary.links.iter().any(|(name, _)| *name == program))
                .count();
            self.metrics
                .probes_attached
                .with_label_values(&[program])
                .set(binaries as i64);
        }
    }
}

/// Why a binary did not get its probes.
#[derive(Debug, thiserror::Error)]
enum AttachError {
    #[error("no symbol {0}")]
    MissingSymbol(&'static str),
    #[error("reading its symbols: {0}")]
    Symbols(String),
    #[error("{0} on {1}: {2}")]
    Attach(&'static str, &'static str, String),
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut UProbe, AttachError> {
    ebpf.program_mut(program)
        .ok_or_else(|| AttachError::Attach(program, "", "not in the object".to_owned()))?
        .try_into()
        .map_err(|error: aya::programs::ProgramError| {
            AttachError::Attach(program, "", error.to_string())
        })
}

fn detach_all(ebpf: &mut Ebpf, links: Vec<(&'static str, UProbeLinkId)>) {
    for (program, link) in links {
        if let Ok(probe) = uprobe(ebpf, program)
            && let Err(error) = probe.detach(link)
        {
            tracing::warn!(program, %error, "detaching a TLS probe");
        }
    }
}

/// A binary a process uses for TLS, open.
struct Binary {
    id: BinaryId,
    /// As the process sees it (`/proc/PID/root/…`, or `/proc/PID/exe`), for `/debug/discovery`.
    path: PathBuf,
    file: File,
    is_library: bool,
}

/// The binary whose TLS `tgid` uses: the `libssl.so*` it maps, else its executable (which may link
/// OpenSSL statically), opened.
fn find_binary(tgid: u32) -> Result<Binary, String> {
    let maps = std::fs::read_to_string(format!("/proc/{tgid}/maps"))
        .map_err(|error| format!("reading /proc/{tgid}/maps: {error}"))?;
    let (path, is_library) = match libssl_in_maps(&maps) {
        Some(library) => (PathBuf::from(format!("/proc/{tgid}/root{library}")), true),
        None => (PathBuf::from(format!("/proc/{tgid}/exe")), false),
    };
    let file = File::open(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(Binary {
        id: BinaryId {
            device: metadata.dev(),
            inode: metadata.ino(),
        },
        path,
        file,
        is_library,
    })
}

/// The path of the first `libssl.so*` mapped in `maps` (the text of `/proc/PID/maps`).
pub(crate) fn libssl_in_maps(maps: &str) -> Option<&str> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with("libssl.so"))
        })
}

/// The file offsets of OpenSSL's functions in `file` (those of [`ATTACH_POINTS`] it defines), from its
/// dynamic symbols, else its symbol table: the ELF read once (mapped), where attaching by name would
/// read it once per probe.
fn symbol_offsets(file: &File) -> Result<HashMap<&'static str, u64>, AttachError> {
    // SAFETY: a private, read-only mapping of a file vigil opened; a binary being rewritten in place
    // while mapped (not how packages are installed) could only make the symbols read wrong.
    let data = unsafe { memmap2::Mmap::map(file) }
        .map_err(|error| AttachError::Symbols(error.to_string()))?;
    let elf =
        object::File::parse(&*data).map_err(|error| AttachError::Symbols(error.to_string()))?;
    let wanted: BTreeSet<&'static str> =
        ATTACH_POINTS.iter().map(|(_, symbol, _)| *symbol).collect();
    let mut offsets = HashMap::new();
    for symbol in elf.dynamic_symbols().chain(elf.symbols()) {
        let Some(name) = symbol
            .name()
            .ok()
            .and_then(|name| wanted.get(name).copied())
        else {
            continue;
        };
        if symbol.is_undefined() || offsets.contains_key(name) {
            continue;
        }
        let Some(section) = symbol
            .section_index()
            .and_then(|index| elf.section_by_index(index).ok())
        else {
            continue;
        };
        if let Some((section_offset, _)) = section.file_range() {
            offsets.insert(name, symbol.address() - section.address() + section_offset);
        }
        if offsets.len() == wanted.len() {
            break;
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn openssl_functions_are_found_in_the_system_libssl_and_not_in_a_binary_without_it() {
        let libssl = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        if !libssl.exists() {
            println!("skipped: no {}", libssl.display());
            return;
        }
        let offsets = symbol_offsets(&File::open(libssl).unwrap()).unwrap();
        for (_, symbol, _) in ATTACH_POINTS {
            assert!(offsets.contains_key(symbol), "{symbol} in {offsets:?}");
        }
        let none = symbol_offsets(&File::open("/bin/true").unwrap()).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
}
