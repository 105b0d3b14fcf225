use vigil_common::{
    IoEventHeader, IoEventKind, PID_MAX_LIMIT, ProcessEvent, ProcessEventKind, TRACKED_TGIDS_WORDS,
    process::{EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN},
};

use super::{process_events::decode, *};

fn event(kind: u32, flags: u32) -> ProcessEvent {
    ProcessEvent {
        kind,
        flags,
        pid: 42,
        tgid: 40,
        related_pid: 0,
        reserved: 0,
        boot_time_ns: 1,
        cgroup_id: 2,
        comm: *b"node\0\0\0\0\0\0\0\0\0\0\0\0",
    }
}

fn bytes_of(event: &ProcessEvent) -> Vec<u8> {
    // SAFETY: a `#[repr(C)]` struct of integers with no padding, viewed as bytes.
    unsafe {
        std::slice::from_raw_parts(
            (event as *const ProcessEvent).cast::<u8>(),
            size_of::<ProcessEvent>(),
        )
    }
    .to_vec()
}

#[test]
fn exits_are_counted_by_group_dead_not_by_leader() {
    let exit = ProcessEventKind::Exit as u32;
    assert_eq!(event_label(&event(exit, EXIT_GROUP_DEAD)), "process_exit");
    // The leader (pid == tgid) exiting first, with other threads alive, is a thread exit.
    let mut leader_first = event(exit, 0);
    leader_first.pid = leader_first.tgid;
    assert_eq!(event_label(&leader_first), "thread_exit");
    assert_eq!(
        event_label(&event(exit, EXIT_GROUP_DEAD_UNKNOWN)),
        "exit_unconfirmed"
    );
}

#[test]
fn labels_every_kind_and_refuses_unknown_ones() {
    assert_eq!(
        event_label(&event(ProcessEventKind::Exec as u32, 0)),
        "exec"
    );
    assert_eq!(
        event_label(&event(ProcessEventKind::Fork as u32, 0)),
        "fork"
    );
    assert_eq!(
        event_label(&event(ProcessEventKind::ThreadSpawn as u32, 0)),
        "thread_spawn"
    );
    assert_eq!(
        event_label(&event(ProcessEventKind::ForkUnclassified as u32, 0)),
        "fork_unclassified"
    );
    assert_eq!(event_label(&event(77, 0)), "malformed");
}

#[test]
fn decodes_whole_records_only() {
    let original = event(ProcessEventKind::Exec as u32, 0);
    let bytes = bytes_of(&original);
    assert_eq!(decode(&bytes), Some(original));
    // Unaligned input decodes too.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&bytes);
    assert_eq!(decode(&shifted[1..]), Some(original));
    assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
}

/// An I/O record as the kernel writes it: a header, then a data area of `capacity` bytes.
fn io_record_bytes(kind: u32, captured: u32, length: u64, capacity: usize) -> Vec<u8> {
    let header = IoEventHeader {
        kind,
        tgid: 7,
        fd: 3,
        captured,
        boot_time_ns: 9,
        length,
        session: 0,
    };
    // SAFETY: a `#[repr(C)]` struct of integers with no padding, viewed as bytes.
    let mut bytes = unsafe {
        std::slice::from_raw_parts(
            (&header as *const IoEventHeader).cast::<u8>(),
            size_of::<IoEventHeader>(),
        )
    }
    .to_vec();
    bytes.extend((0..capacity).map(|index| index as u8));
    bytes
}

#[test]
fn io_records_of_every_size_are_read_and_malformed_ones_refused() {
    use vigil_common::io::{IO_DATA_CLASSES, IO_DATA_MAX};

    let small = IoRecord::parse(&io_record_bytes(1, 5, 5, IO_DATA_CLASSES[0]), Vec::new()).unwrap();
    assert_eq!(small.kind, IoEventKind::Receive);
    assert_eq!((small.tgid, small.fd, small.boot_time_ns), (7, 3, 9));
    assert_eq!(small.data, [0, 1, 2, 3, 4]);
    assert!(!small.is_truncated());
    // A reused buffer (an earlier, longer record's) holds the new record's data only.
    let reused = IoRecord::parse(
        &io_record_bytes(1, 5, 5, IO_DATA_CLASSES[0]),
        vec![0xff; 700],
    );
    assert_eq!(reused.unwrap().data, [0, 1, 2, 3, 4]);
    let large = IoRecord::parse(
        &io_record_bytes(2, IO_DATA_MAX as u32, 5000, IO_DATA_MAX),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(large.data.len(), IO_DATA_MAX);
    assert!(large.is_truncated());
    // More data claimed than the record holds, an unknown kind, a record shorter than a header.
    assert_eq!(
        IoRecord::parse(
            &io_record_bytes(1, 200, 200, IO_DATA_CLASSES[0]),
            Vec::new()
        ),
        None
    );
    assert_eq!(
        IoRecord::parse(&io_record_bytes(9, 1, 1, IO_DATA_CLASSES[0]), Vec::new()),
        None
    );
    assert_eq!(
        IoRecord::parse(&io_record_bytes(1, 0, 0, 0)[..8], Vec::new()),
        None
    );
}

/// The filter over anonymous memory of the bitmap's size, as vigil maps the kernel's.
fn filter_in_memory() -> TrackedTgids {
    let memory = memmap2::MmapOptions::new()
        .len(TRACKED_TGIDS_WORDS as usize * size_of::<u64>())
        .map_anon()
        .expect("anonymous memory");
    TrackedTgids {
        memory: memory.into(),
    }
}

#[test]
fn the_filter_bitmap_keeps_each_tgid_to_its_own_bit() {
    let mut filter = filter_in_memory();
    let tgids = [1, 63, 64, 65, 4242, PID_MAX_LIMIT - 1];
    for tgid in tgids {
        filter.insert(tgid).expect("a tgid the kernel can give out");
    }
    assert_eq!(filter.tgids(), tgids);
    filter.remove(64);
    assert!(!filter.contains(64));
    assert!(
        filter.contains(63) && filter.contains(65),
        "its neighbours stay"
    );
    assert_eq!(filter.tgids(), [1, 63, 65, 4242, PID_MAX_LIMIT - 1]);

    assert!(filter.insert(PID_MAX_LIMIT).is_err());
    assert!(!filter.contains(PID_MAX_LIMIT));
    filter.remove(PID_MAX_LIMIT);
    assert_eq!(filter.tgids().len(), 5);
}

#[test]
fn writers_of_the_same_words_never_lose_each_others_bits() {
    // Four writers share every word (tgid = 4 * n + writer) and write each of their bits once per
    // phase, all four together: set every tgid, then clear those with tgid % 8 >= 4. An update a
    // read-modify-write that is not atomic loses is never written again, so it shows at the end.
    let filter = filter_in_memory();
    let writers = 4;
    let phase = |write: &(dyn Fn(&TrackedTgids, u32) + Sync)| {
        let start = std::sync::Barrier::new(writers as usize);
        std::thread::scope(|scope| {
            for writer in 0..writers {
                let (filter, start) = (&filter, &start);
                scope.spawn(move || {
                    start.wait();
                    for tgid in (writer..PID_MAX_LIMIT).step_by(writers as usize) {
                        write(filter, tgid);
                    }
                });
            }
        });
    };
    phase(&|filter, tgid| filter.set(tgid).unwrap());
    assert_eq!(filter.tgids().len(), PID_MAX_LIMIT as usize);
    phase(&|filter, tgid| {
        if tgid % 8 >= 4 {
            filter.clear(tgid);
        }
    });
    let expected: Vec<u32> = (0..PID_MAX_LIMIT).filter(|tgid| tgid % 8 < 4).collect();
    assert_eq!(filter.tgids(), expected);
}
