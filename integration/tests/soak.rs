//! Root only: two minutes of process churn plus load (`vigil_integration::soak`), after which vigil's
//! process table, connections, series and held requests are back at their baseline and its RSS near
//! it, with every request sent to the churned servers counted. The 30-minute run: `make soak`.

use std::time::Duration;

use vigil_integration::{require_root, soak};

#[test]
fn two_minutes_of_churn_and_load_leave_vigil_where_it_started() {
    if !require_root("two_minutes_of_churn_and_load_leave_vigil_where_it_started") {
        return;
    }
    let report = soak::run(Duration::from_secs(120));
    println!("{report:#?}");
    let (baseline, after) = (&report.baseline, &report.after);
    assert!(report.vigil_ready, "vigil still ready");
    assert!(
        report.cycles_short.is_empty(),
        "cycles whose requests were not all counted (cycle, counted, sent): {:?}",
        report.cycles_short
    );
    assert_eq!(after.label_sets, baseline.label_sets, "series");
    // Every connection of the churned servers is forgotten. The steady server's count may grow by
    // the non-socket fds capture also sees it write (its stdout, libuv's wake-up pipe).
    assert_eq!(
        after.connections_of_others, 0,
        "connections of other processes"
    );
    assert!(
        after.connections <= baseline.connections + 2.0,
        "connections {} after, {} before",
        after.connections,
        baseline.connections
    );
    assert_eq!(after.instrumented, baseline.instrumented, "instrumented");
    assert_eq!(after.held_requests, 0.0, "held requests");
    // The process table follows the node's processes (which other tests' leftovers may change).
    let drift = after.table_entries - after.processes_on_node as f64;
    assert!(
        drift.abs() <= 10.0,
        "process table {} against {} processes in /proc",
        after.table_entries,
        after.processes_on_node
    );
    assert!(
        after.rss_mib <= baseline.rss_mib + 10.0,
        "RSS {:.1} MiB after the churn against {:.1} MiB before",
        after.rss_mib,
        baseline.rss_mib
    );
    assert!(report.cycles >= 10, "{} cycles", report.cycles);
}
