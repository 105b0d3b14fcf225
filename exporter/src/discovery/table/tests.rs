use super::*;

fn process(pid: u32, start_ticks: u64, exe: &str) -> ProcessInfo {
    ProcessInfo {
        identity: ProcessIdentity { pid, start_ticks },
        parent_pid: 1,
        ns_pid: None,
        exe: Some(exe.into()),
        cmdline: exe.to_owned(),
        arguments: 0,
        cgroup: None,
        container: Default::default(),
    }
}

#[test]
fn upsert_tells_insert_update_and_reuse_apart() {
    let mut table = ProcessTable::default();
    assert_eq!(table.upsert(process(10, 100, "/bin/sh")), Upsert::Inserted);
    // exec: same identity, new program
    assert_eq!(
        table.upsert(process(10, 100, "/usr/bin/node")),
        Upsert::Updated
    );
    assert_eq!(
        table.get(10).unwrap().exe.as_deref(),
        Some("/usr/bin/node".as_ref())
    );
    // same pid, later start: another process
    assert_eq!(
        table.upsert(process(10, 500, "/usr/bin/python3")),
        Upsert::Replaced(ProcessIdentity {
            pid: 10,
            start_ticks: 100
        })
    );
}

#[test]
fn remove_never_drops_the_new_owner_of_a_reused_pid() {
    let mut table = ProcessTable::default();
    table.upsert(process(10, 500, "/usr/bin/python3"));
    assert!(!table.remove(ProcessIdentity {
        pid: 10,
        start_ticks: 100
    }));
    assert_eq!(table.len(), 1);
    assert!(table.remove(ProcessIdentity {
        pid: 10,
        start_ticks: 500
    }));
    assert!(table.is_empty());
}

#[test]
fn reconcile_counts_each_kind_of_correction() {
    let mut table = ProcessTable::default();
    table.upsert(process(1, 1, "/sbin/init"));
    table.upsert(process(20, 200, "/usr/bin/node")); // exited, exit event lost
    table.upsert(process(30, 300, "/bin/sh")); // pid reused by another program
    table.upsert(process(50, 500, "/bin/sh")); // exec'd node, exec event lost
    let live = vec![
        process(1, 1, "/sbin/init"),
        process(50, 500, "/usr/bin/node"),
        process(30, 900, "/usr/bin/python3"),
        process(40, 400, "/usr/bin/node"), // exec event lost
    ];
    let corrections = table.reconcile(live);
    assert_eq!(
        corrections,
        Corrections {
            missed_exec: 2,
            missed_exit: 1,
            pid_reused: 1
        }
    );
    let pids: Vec<_> = table
        .iter()
        .map(|info| (info.identity.pid, info.identity.start_ticks))
        .collect();
    assert_eq!(pids, [(1, 1), (30, 900), (40, 400), (50, 500)]);
    assert_eq!(
        table.get(50).unwrap().exe.as_deref(),
        Some("/usr/bin/node".as_ref())
    );
    // A second reconcile against the same truth corrects nothing.
    let again = table.reconcile(table.iter().cloned().collect());
    assert_eq!(again, Corrections::default());
}
