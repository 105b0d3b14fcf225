//! The long soak (`make soak`; `ARGS='--minutes N'`, 30 by default): `vigil_integration::soak` for that
//! long, printing vigil's RSS over time and what came back to its baseline. Figures and a verdict;
//! needs root. The two-minute version runs in `make test` (integration/tests/soak.rs).

use std::time::Duration;

use vigil_integration::{raise_open_files, require_root, soak};

fn main() {
    if !require_root("soak") {
        return;
    }
    raise_open_files();
    let args: Vec<String> = std::env::args().collect();
    let minutes: u64 = args
        .iter()
        .position(|arg| arg == "--minutes")
        .and_then(|at| args.get(at + 1))
        .map(|value| value.parse().expect("--minutes takes a whole number"))
        .unwrap_or(30);
    println!("soak: {minutes} minutes of churn");
    let report = soak::run(Duration::from_secs(minutes * 60));
    let (baseline, after) = (&report.baseline, &report.after);
    println!(
        "cycles {}, pods started {}, requests sent {}, cycles not fully counted {:?}",
        report.cycles, report.pods_started, report.requests_sent, report.cycles_short
    );
    println!(
        "events lost {}, requests dropped {} (short-lived listeners' and the like)",
        report.events_lost, report.requests_dropped
    );
    println!("| | baseline | after |\n| --- | --- | --- |");
    println!(
        "| RSS | {:.1} MiB | {:.1} MiB |",
        baseline.rss_mib, after.rss_mib
    );
    println!(
        "| process table (processes in /proc) | {} ({}) | {} ({}) |",
        baseline.table_entries,
        baseline.processes_on_node,
        after.table_entries,
        after.processes_on_node
    );
    for (name, before, now) in [
        ("instrumented", baseline.instrumented, after.instrumented),
        ("connections", baseline.connections, after.connections),
        ("RED label sets", baseline.label_sets, after.label_sets),
        ("held requests", baseline.held_requests, after.held_requests),
    ] {
        println!("| {name} | {before} | {now} |");
    }
    // RSS over the run, by tenth: a leak climbs from one to the next.
    let tenth = report.rss.len().div_ceil(10).max(1);
    println!("RSS by tenth of the run (max MiB):");
    for chunk in report.rss.chunks(tenth) {
        let max = chunk.iter().map(|(_, mib)| *mib).fold(0.0, f64::max);
        println!("  from {:>6.0} s: {max:.1}", chunk[0].0);
    }
    println!(
        "| connections of other processes than the steady server | {} | {} |",
        baseline.connections_of_others, after.connections_of_others
    );
    let back = after.label_sets == baseline.label_sets
        && after.connections_of_others == 0
        && after.instrumented == baseline.instrumented
        && after.held_requests == 0.0
        && report.cycles_short.is_empty();
    println!(
        "verdict: {}",
        if back {
            "back to baseline"
        } else {
            "NOT back to baseline"
        }
    );
    if !back {
        std::process::exit(1);
    }
}
