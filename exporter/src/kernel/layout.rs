//! Tracepoint field layouts, read from tracefs `format` files at start, and the offsets of the kernel
//! members the sock program follows, read from the kernel's BTF, so that the eBPF programs never
//! assume one kernel's offsets.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use vigil_common::{ProcessTracepointLayout, SockLayout, SyscallLayout, process::FIELD_ABSENT};

/// Why a tracepoint's layout could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The format file is missing or unreadable (the tracepoint does not exist, or tracefs is not mounted).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A field the program needs is not there, or has another size.
    #[error("{tracepoint}: field `{field}` {problem}")]
    Field {
        tracepoint: &'static str,
        field: &'static str,
        problem: String,
    },
    /// The kernel's BTF cannot be read, or does not describe a member the program reads.
    #[error("kernel BTF ({path}): {problem}")]
    Btf { path: PathBuf, problem: String },
}

/// One field of a tracepoint record: where it is and how wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldLocation {
    pub offset: u32,
    pub size: u32,
}

/// Parses a tracefs `format` file into field name → location.
///
/// Lines look like `\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;`; array fields
/// (`char comm[16]`) are named without the brackets, `__data_loc` fields by their last word.
pub fn parse_format(text: &str) -> HashMap<String, FieldLocation> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let mut declaration = None;
        let mut offset = None;
        let mut size = None;
        for part in line.split(';') {
            let part = part.trim();
            if let Some(value) = part.strip_prefix("field:") {
                declaration = Some(value);
            } else if let Some(value) = part.strip_prefix("offset:") {
                offset = value.parse().ok();
            } else if let Some(value) = part.strip_prefix("size:") {
                size = value.parse().ok();
            }
        }
        let (Some(declaration), Some(offset), Some(size)) = (declaration, offset, size) else {
            continue;
        };
        let Some(name) = declaration.split_whitespace().last() else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name);
        fields.insert(name.to_owned(), FieldLocation { offset, size });
    }
    fields
}

/// Where the I/O programs find a syscall's fd, buffer and return value in the task's saved user
/// registers (`struct pt_regs`): the architecture's ABI. x86_64: `di`, `si`, `ax`.
#[cfg(target_arch = "x86_64")]
const SYSCALL_REGISTERS: Option<SyscallLayout> = Some(SyscallLayout {
    regs_fd: 14 * 8,
    regs_buffer: 13 * 8,
    regs_ret: 10 * 8,
});
/// arm64: `regs[0]` holds the return value at exit, the first argument stays in `orig_x0`; `regs[1]`.
#[cfg(target_arch = "aarch64")]
const SYSCALL_REGISTERS: Option<SyscallLayout> = Some(SyscallLayout {
    regs_fd: 34 * 8,
    regs_buffer: 8,
    regs_ret: 0,
});
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALL_REGISTERS: Option<SyscallLayout> = None;

/// The layout the I/O programs need: the register offsets of this architecture.
pub fn syscall_layout() -> Result<SyscallLayout, LayoutError> {
    SYSCALL_REGISTERS.ok_or_else(|| LayoutError::Field {
        tracepoint: "sys_exit_read",
        field: "pt_regs",
        problem: format!("offsets are unknown on {}", std::env::consts::ARCH),
    })
}

/// The offset of `field` in `tracepoint`'s parsed format, which must be `size` bytes wide.
fn field_offset(
    fields: &HashMap<String, FieldLocation>,
    tracepoint: &'static str,
    field: &'static str,
    size: u32,
) -> Result<u32, LayoutError> {
    match fields.get(field) {
        Some(location) if location.size == size => Ok(location.offset),
        Some(location) => Err(LayoutError::Field {
            tracepoint,
            field,
            problem: format!("is {} bytes, expected {size}", location.size),
        }),
        None => Err(LayoutError::Field {
            tracepoint,
            field,
            problem: "is missing".to_owned(),
        }),
    }
}

/// Where the kernel describes its own types (BTF).
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The layout the sock program needs: the fields of `sock/inet_sock_set_state` from tracefs, and the
/// offsets of the kernel members it follows to a socket's network namespace and received bytes from
/// the kernel's BTF at `btf`.
pub fn read_sock_layout(tracefs: &Path, btf: &Path) -> Result<SockLayout, LayoutError> {
    const TRACEPOINT: &str = "inet_sock_set_state";
    let path = tracefs.join("events/sock").join(TRACEPOINT).join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| LayoutError::Unreadable { path, source })?;
    let fields = parse_format(&text);
    let field = |name: &'static str, size: u32| field_offset(&fields, TRACEPOINT, name, size);
    let btf_error = |problem: String| LayoutError::Btf {
        path: btf.to_owned(),
        problem,
    };
    let bytes = super::btf::KernelBtf::open(btf).map_err(|error| btf_error(error.to_string()))?;
    let types = super::btf::Btf::parse(&bytes).map_err(|error| btf_error(error.to_string()))?;
    let offset = |structure: &str, path: &str| {
        types
            .member_offset(structure, path)
            .map_err(|error| btf_error(error.to_string()))
    };
    Ok(SockLayout {
        skaddr: field("skaddr", 8)?,
        oldstate: field("oldstate", 4)?,
        newstate: field("newstate", 4)?,
        sport: field("sport", 2)?,
        protocol: field("protocol", 2)?,
        sock_net: offset("sock", "__sk_common.skc_net.net")?,
        net_inum: offset("net", "ns.inum")?,
        tcp_bytes_received: offset("tcp_sock", "bytes_received")?,
    })
}

/// The tracepoints the process programs read, with the fields each needs and their sizes.
pub const PROCESS_TRACEPOINTS: [(&str, &str); 5] = [
    ("sched", "sched_process_exec"),
    ("task", "task_newtask"),
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exit"),
    ("syscalls", "sys_exit_listen"),
];

/// The layout of the process tracepoints, and the tracepoints that cannot be used (their programs are
/// not loaded). A missing `group_dead` is not an error: exits are then confirmed from /proc.
pub fn read_process_layout(
    tracefs: &Path,
) -> (ProcessTracepointLayout, HashMap<&'static str, LayoutError>) {
    let mut layout = ProcessTracepointLayout::UNKNOWN;
    let mut errors = HashMap::new();
    for (category, name) in PROCESS_TRACEPOINTS {
        let path = tracefs
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let fields = match std::fs::read_to_string(&path) {
            Ok(text) => parse_format(&text),
            Err(source) => {
                errors.insert(name, LayoutError::Unreadable { path, source });
                continue;
            }
        };
        let field = |field: &'static str, size: u32| field_offset(&fields, name, field, size);
        let result = match name {
            "sched_process_exec" => field("old_pid", 4).map(|old_pid| {
                layout.exec_old_pid = old_pid;
                layout.exec_pid = field("pid", 4).unwrap_or(FIELD_ABSENT);
            }),
            "task_newtask" => field("pid", 4).and_then(|pid| {
                layout.newtask_clone_flags = field("clone_flags", 8)?;
                layout.newtask_pid = pid;
                Ok(())
            }),
            "sched_process_fork" => field("child_pid", 4).and_then(|child| {
                layout.fork_parent_pid = field("parent_pid", 4)?;
                layout.fork_child_pid = child;
                Ok(())
            }),
            "sys_exit_listen" => field("ret", 8).map(|ret| layout.listen_ret = ret),
            _ => field("pid", 4).map(|pid| {
                layout.exit_pid = pid;
                layout.exit_group_dead = field("group_dead", 1).unwrap_or(FIELD_ABSENT);
            }),
        };
        if let Err(error) = result {
            errors.insert(name, error);
        }
    }
    (layout, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sched_process_exit` on the 6.18 kernel this project is developed on.
    const EXIT_6_18: &str = "name: sched_process_exit
ID: 310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;

print fmt: \"comm=%s pid=%d prio=%d group_dead=%s\", REC->comm, REC->pid, REC->prio, REC->group_dead ? \"true\" : \"false\"
";

    #[test]
    fn parses_fields_arrays_and_data_loc() {
        let fields = parse_format(EXIT_6_18);
        assert_eq!(
            fields["pid"],
            FieldLocation {
                offset: 24,
                size: 4
            }
        );
        assert_eq!(
            fields["comm"],
            FieldLocation {
                offset: 8,
                size: 16
            }
        );
        assert_eq!(
            fields["group_dead"],
            FieldLocation {
                offset: 32,
                size: 1
            }
        );
        let exec =
            parse_format("\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;");
        assert_eq!(exec["filename"], FieldLocation { offset: 8, size: 4 });
    }

    fn tracefs_with(formats: &[(&str, &str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (category, name, text) in formats {
            let dir = root.path().join("events").join(category).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("format"), text).unwrap();
        }
        root
    }

    #[test]
    fn old_kernel_without_group_dead_still_loads_exit() {
        let old_exit = EXIT_6_18.replace(
            "\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n",
            "",
        );
        let root = tracefs_with(&[("sched", "sched_process_exit", &old_exit)]);
        let (layout, errors) = read_process_layout(root.path());
        assert_eq!(layout.exit_pid, 24);
        assert_eq!(layout.exit_group_dead, FIELD_ABSENT);
        assert!(!errors.contains_key("sched_process_exit"));
        // The four tracepoints with no format file are reported, each on its own.
        assert_eq!(errors.len(), 4);
        assert!(matches!(
            errors["task_newtask"],
            LayoutError::Unreadable { .. }
        ));
    }

    #[test]
    fn wrong_field_size_is_refused() {
        let bad = "\tfield:u32 clone_flags;\toffset:32;\tsize:4;\tsigned:0;\n\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;";
        let root = tracefs_with(&[("task", "task_newtask", bad)]);
        let (layout, errors) = read_process_layout(root.path());
        assert_eq!(layout.newtask_pid, FIELD_ABSENT);
        let message = errors["task_newtask"].to_string();
        assert!(
            message.contains("clone_flags") && message.contains("expected 8"),
            "{message}"
        );
    }
}
