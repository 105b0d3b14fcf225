//! Load generators the scenarios drive, each reporting the responses it received by status: `wrk`
//! (with a status-counting script) and `hey` (its status code distribution).

use std::{collections::BTreeMap, process::Command};

use crate::workspace;

/// Responses received, by status code.
pub type Statuses = BTreeMap<String, u64>;

/// Runs `wrk` against `port` for `seconds` with `connections` keep-alive connections (one thread),
/// cycling through `paths`; the responses it completed, by status. wrk does not count the responses in
/// flight when it stops (at most one per connection).
pub fn wrk(port: u16, connections: u32, seconds: u32, paths: &[&str]) -> Statuses {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "-s",
        ])
        .arg(workspace().join("integration/workloads/wrk/statuses.lua"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--")
        .args(paths)
        .output()
        .expect("running wrk");
    assert!(output.status.success(), "wrk: {output:?}");
    let report = String::from_utf8(output.stdout).unwrap();
    report
        .lines()
        .filter_map(|line| {
            let (status, count) = line.split_once('=')?;
            Some((status.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// The status mix of the capture scenarios: `wrk` for 3 s over `/users/1`, `/missing/page`, `/fail`
/// and `/users/2` of a server of the node workloads, checked to have received 200, 404 and 500.
pub fn wrk_status_mix(port: u16, connections: u32) -> Statuses {
    let completed = wrk(
        port,
        connections,
        3,
        &["/users/1", "/missing/page", "/fail", "/users/2"],
    );
    assert_eq!(
        completed.keys().collect::<Vec<_>>(),
        ["200", "404", "500"],
        "{completed:?}"
    );
    completed
}

/// Runs `hey` against `path` on `port`: exactly `requests` requests over `concurrency` keep-alive
/// connections; the responses it received, by status (a failed request has none).
pub fn hey(port: u16, requests: u32, concurrency: u32, path: &str) -> Statuses {
    let output = Command::new("hey")
        .args(["-n", &requests.to_string(), "-c", &concurrency.to_string()])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("running hey");
    assert!(output.status.success(), "hey: {output:?}");
    let report = String::from_utf8(output.stdout).unwrap();
    // "Status code distribution:" then lines like "  [200]\t1000 responses".
    report
        .lines()
        .filter_map(|line| {
            let (status, rest) = line.trim().strip_prefix('[')?.split_once(']')?;
            let count = rest.split_whitespace().next()?.parse().ok()?;
            Some((status.to_owned(), count))
        })
        .collect()
}

/// How many more responses `counted` has than `completed`, when it has at least as many of every
/// status and no other status; `None` otherwise.
pub fn counted_beyond(counted: &Statuses, completed: &Statuses) -> Option<u64> {
    if !counted.keys().eq(completed.keys()) {
        return None;
    }
    completed.iter().try_fold(0, |extra, (status, count)| {
        let got = counted.get(status).copied().unwrap_or(0);
        (got >= *count).then(|| extra + got - count)
    })
}
