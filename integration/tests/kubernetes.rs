//! Root only: the pod watcher against an API server that speaks the real list/watch protocol
//! (`integration/src/fake_apiserver.rs`), and the unmonitored-pod gauge over simulated pods.

use std::time::Duration;

use serde_json::Value;
use vigil_integration::{
    Pod, Vigil, eventually,
    fake_apiserver::{FakeApiServer, pod},
    family_of, free_port, http_client, require_root, sample_value, samples, workspace,
};

const NODE: &str = "node-a";
/// Ready long before any grace.
const LONG_AGO: &str = "2026-01-01T00:00:00Z";

fn vigil_with(server: &FakeApiServer, extra: &str) -> Vigil {
    let kubeconfig = server.kubeconfig();
    let config = format!(
        "discovery:\n  instrument: [{{open_ports: '1-65535', container: true}}]\n  heartbeat_interval: 200ms\n\
         k8s:\n  node_name: {NODE}\n{extra}"
    );
    let vigil = Vigil::spawn(&config, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    vigil.wait_ready(Duration::from_secs(20));
    vigil
}

/// The pods section of `/debug/discovery`, by name.
fn pods(vigil: &Vigil) -> Vec<Value> {
    vigil.debug_discovery()["pods"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn pod_names(vigil: &Vigil) -> Vec<String> {
    let mut names: Vec<String> = pods(vigil)
        .iter()
        .map(|pod| pod["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn api_pod(name: &str, uid: &str) -> Value {
    pod("shop", name, uid, NODE, &"0".repeat(64), LONG_AGO)
}

#[test]
fn the_pod_watch_follows_events_and_recovers_from_drops_and_gone() {
    if !require_root("the_pod_watch_follows_events_and_recovers_from_drops_and_gone") {
        return;
    }
    let server = FakeApiServer::start();
    server.apply(api_pod("web-a", "uid-a"));
    server.apply(api_pod("web-b", "uid-b"));
    let vigil = vigil_with(&server, "");
    let names = |want: &[&str]| eventually(Duration::from_secs(10), || pod_names(&vigil) == want);
    assert!(
        names(&["web-a", "web-b"]),
        "listed: {:?}",
        pod_names(&vigil)
    );
    assert!(
        server
            .requests()
            .iter()
            .filter(|target| target.starts_with("/api/v1/pods"))
            .all(|target| target.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "pods are watched node-scoped: {:?}",
        server.requests()
    );

    // Watch events.
    server.apply(api_pod("web-c", "uid-c"));
    server.delete("uid-b");
    assert!(
        names(&["web-a", "web-c"]),
        "watched: {:?}",
        pod_names(&vigil)
    );

    // A dropped connection: the watch resumes from its resource version, missing nothing.
    server.drop_watches();
    server.apply(api_pod("web-d", "uid-d"));
    assert!(
        names(&["web-a", "web-c", "web-d"]),
        "resumed: {:?}",
        pod_names(&vigil)
    );

    // 410 Gone: the watcher lists again.
    let lists_before = server
        .requests()
        .iter()
        .filter(|target| !target.contains("watch=true"))
        .count();
    server.expire_next_watch();
    server.drop_watches();
    server.delete("uid-a");
    assert!(
        names(&["web-c", "web-d"]),
        "relisted: {:?}",
        pod_names(&vigil)
    );
    let lists_after = server
        .requests()
        .iter()
        .filter(|target| !target.contains("watch=true"))
        .count();
    assert!(lists_after > lists_before, "a relist after 410 Gone");
    assert!(vigil.metric("vigil_kube_watch_restarts_total") >= 1.0);
    // One failure, and the list after it succeeded: the store was never taken for stale.
    assert!(
        !vigil.log().contains("pods of this node are stale"),
        "{}",
        vigil.log()
    );
    assert_eq!(vigil.metric("vigil_kube_watch_up"), 1.0);
    assert_eq!(vigil.metric("vigil_kube_pods{phase=\"Running\"}"), 2.0);
    assert!(vigil.metric("vigil_kube_last_event_age_seconds") < 60.0);
    let web_c = pods(&vigil)
        .into_iter()
        .find(|pod| pod["name"] == "web-c")
        .unwrap();
    assert_eq!(web_c["owner"], "Deployment/web", "{web_c}");
}

/// A node replica in a simulated pod, announced to the API server with its UID and container id.
fn replica(server: &FakeApiServer, name: &str, listen_delay_ms: u64) -> (Pod, u16) {
    let port = free_port();
    let mut simulated = Pod::start("node", &["server.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/npm-server"))
            .env("PORT", port.to_string())
            .env("LISTEN_DELAY_MS", listen_delay_ms.to_string());
    });
    server.apply(pod(
        "shop",
        name,
        &simulated.uid,
        NODE,
        &simulated.container_id,
        LONG_AGO,
    ));
    if listen_delay_ms == 0 {
        assert_eq!(simulated.read_line(), format!("listening {port}"));
    }
    (simulated, port)
}

/// A pod-monitoring gauge (`vigil_monitored_pods`, `vigil_unmonitored_pods`,
/// `vigil_pod_monitoring_status`), `None` while its series is absent: the gauges are reset and refilled
/// on each heartbeat, so a series exists only while some pod is counted in it.
fn gauge(vigil: &Vigil, sample: &str) -> Option<f64> {
    vigil.try_metric(sample)
}

/// The `vigil_unmonitored_pods` series of namespace `shop` for `reason`.
fn unmonitored(reason: &str) -> String {
    format!("vigil_unmonitored_pods{{k8s_namespace_name=\"shop\",reason=\"{reason}\"}}")
}

/// `vigil_unmonitored_pods` of namespace `shop` for `reason`, 0 when its series is absent. Absence is
/// legitimate: the gauges are reset and refilled on each heartbeat, so a reason no pod has has no
/// series; and while every pod is monitored the family has none at all, and `/metrics` leaves it out,
/// `# TYPE vigil_unmonitored_pods gauge` line included. So it reads as 0 only from a scrape that proves
/// the gauges are published: `vigil_pod_monitoring_status` (set in the same pass) has the namespace's
/// expected pods, `vigil_unmonitored_pods` is exported when one of them is not `monitored`, and it
/// counts as many pods under `reason` as have that status.
fn unmonitored_or_zero(vigil: &Vigil, reason: &str) -> f64 {
    let sample = unmonitored(reason);
    let mut exposition = String::new();
    // A scrape may fall between the reset of the gauges and their refill: wait for a whole one.
    let published = eventually(Duration::from_secs(3), || {
        exposition = vigil.metrics();
        let statuses: Vec<String> = samples(&exposition, "vigil_pod_monitoring_status")
            .into_iter()
            .filter(|(labels, value)| labels["k8s_namespace_name"] == "shop" && *value == 1.0)
            .map(|(labels, _)| labels["status"].clone())
            .collect();
        let exported = family_of(&exposition, "vigil_unmonitored_pods")
            == Some(("vigil_unmonitored_pods", "gauge"));
        let with_reason = statuses.iter().filter(|status| *status == reason).count();
        !statuses.is_empty()
            && (exported || statuses.iter().all(|status| status == "monitored"))
            && sample_value(&exposition, &sample).unwrap_or(0.0) == with_reason as f64
    });
    assert!(
        published,
        "the pod-monitoring gauges of shop are not published consistently:\n{exposition}"
    );
    sample_value(&exposition, &sample).unwrap_or(0.0)
}

#[test]
fn the_unmonitored_pod_gauge_names_the_pod_and_the_reason_and_clears() {
    if !require_root("the_unmonitored_pod_gauge_names_the_pod_and_the_reason_and_clears") {
        return;
    }
    let server = FakeApiServer::start();
    let vigil = vigil_with(&server, "");
    let monitored = "vigil_monitored_pods{k8s_namespace_name=\"shop\"}";

    // Two replicas, then a scale-out to six: every one monitored, none left out.
    let mut replicas: Vec<(Pod, u16)> = (0..2)
        .map(|n| replica(&server, &format!("web-{n}"), 0))
        .collect();
    assert!(eventually(Duration::from_secs(10), || gauge(
        &vigil, monitored
    ) == Some(2.0)));
    replicas.extend((2..6).map(|n| replica(&server, &format!("web-{n}"), 0)));
    assert!(
        eventually(Duration::from_secs(10), || gauge(&vigil, monitored)
            == Some(6.0)),
        "monitored: {:?}; pods: {:?}",
        gauge(&vigil, monitored),
        pods(&vigil)
    );
    // Every pod is monitored: `vigil_unmonitored_pods` has no series, not even a `# TYPE` line, so
    // each reason reads as absent-or-zero, proven published by `vigil_pod_monitoring_status`.
    for reason in [
        "no_process_found",
        "no_matching_process",
        "process_too_young",
        "attach_failed",
    ] {
        assert_eq!(unmonitored_or_zero(&vigil, reason), 0.0, "{reason}");
    }

    // A replica whose server has not opened its port: its process matches no selector yet.
    let (late, _) = replica(&server, "web-late", 4_000);
    let late_status = "vigil_pod_monitoring_status{k8s_namespace_name=\"shop\",k8s_pod_name=\"web-late\",status=\"no_matching_process\"}";
    let mut exposition = String::new();
    assert!(
        eventually(Duration::from_secs(3), || {
            exposition = vigil.metrics();
            sample_value(&exposition, &unmonitored("no_matching_process")) == Some(1.0)
        }),
        "pods: {:?}",
        pods(&vigil)
    );
    // With a pod unmonitored the family is exported; the reasons no pod has are absent from it or 0
    // (reset and refilled on each heartbeat, a series with 0 pods need not exist).
    assert_eq!(
        family_of(&exposition, "vigil_unmonitored_pods"),
        Some(("vigil_unmonitored_pods", "gauge"))
    );
    for reason in ["process_too_young", "attach_failed"] {
        assert_eq!(
            sample_value(&exposition, &unmonitored(reason)).unwrap_or(0.0),
            0.0,
            "{reason}"
        );
    }
    assert_eq!(gauge(&vigil, late_status), Some(1.0));
    // Once it listens it is instrumented, and the gauge clears.
    assert!(
        eventually(Duration::from_secs(8), || unmonitored_or_zero(
            &vigil,
            "no_matching_process"
        ) == 0.0
            && gauge(&vigil, monitored) == Some(7.0)),
        "pods: {:?}",
        pods(&vigil)
    );

    // A pod whose containers vigil cannot find on this node.
    server.apply(api_pod("web-ghost", "00000000-0000-0000-0000-000000000000"));
    assert!(eventually(Duration::from_secs(3), || gauge(
        &vigil,
        &unmonitored("no_process_found")
    ) == Some(1.0)));
    // Deleted: it leaves the gauges.
    server.delete("00000000-0000-0000-0000-000000000000");
    assert!(eventually(Duration::from_secs(3), || unmonitored_or_zero(
        &vigil,
        "no_process_found"
    ) == 0.0));

    // Opted out by annotation: not expected at all.
    let mut opted_out = api_pod("web-quiet", "11111111-1111-1111-1111-111111111111");
    opted_out["metadata"]["annotations"] = serde_json::json!({"vigil.io/instrument": "false"});
    server.apply(opted_out);
    assert!(eventually(Duration::from_secs(3), || pods(&vigil)
        .iter()
        .any(
            |pod| pod["name"] == "web-quiet" && pod["expected"] == false
        )));
    assert_eq!(unmonitored_or_zero(&vigil, "no_process_found"), 0.0);
    drop(late);
    drop(replicas);
}

/// A node HTTP server (the capture workload) in a simulated pod; announced to the API server now or
/// later by the caller.
fn http_replica() -> (Pod, u16) {
    let port = free_port();
    let mut simulated = Pod::start("node", &["server.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/http-server"))
            .env("PORT", port.to_string());
    });
    assert_eq!(simulated.read_line(), format!("listening {port}"));
    (simulated, port)
}

/// Server request counts by pod name, for series with the given identity labels.
fn requests_by_pod(vigil: &Vigil) -> std::collections::BTreeMap<String, u64> {
    let (_, body) = vigil.get("/metrics");
    let mut counts = std::collections::BTreeMap::new();
    for (labels, value) in samples(&body, "http_server_request_duration_seconds_count") {
        let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
        let identity = [
            ("service_name", "web"),
            ("service_namespace", "shop"),
            ("k8s_namespace_name", "shop"),
            ("k8s_container_name", "app"),
            ("k8s_node_name", NODE),
            ("k8s_deployment_name", "web"),
            ("k8s_replicaset_name", "web-5d8f7c9b4"),
            ("k8s_owner_name", "web"),
        ];
        assert!(
            identity.iter().all(|(name, want)| label(name) == *want),
            "series without its pod's identity: {labels:?}"
        );
        *counts.entry(label("k8s_pod_name")).or_default() += value as u64;
    }
    counts
}

/// Announces simulated pod `replica` as pod `name` of namespace `shop` on this node, ready now.
fn announce(server: &FakeApiServer, name: &str, replica: &Pod) {
    server.apply(pod(
        "shop",
        name,
        &replica.uid,
        NODE,
        &replica.container_id,
        &now_rfc3339(),
    ));
}

/// Whether a `/metrics` exposition reports any pod unmonitored.
fn reports_unmonitored(exposition: &str) -> bool {
    exposition
        .lines()
        .filter(|line| line.starts_with("vigil_unmonitored_pods{"))
        .any(|line| !line.ends_with(" 0"))
}

/// Now, in RFC 3339, as the API server writes condition times.
fn now_rfc3339() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn red_series_carry_their_pod_labels_through_a_scale_out() {
    if !require_root("red_series_carry_their_pod_labels_through_a_scale_out") {
        return;
    }
    const REPLICAS: usize = 10;
    // A busy node: 16 000 sockets in the host's TCP tables make each read of them slow (tens of
    // milliseconds, more in a debug build), so discovery decides on events the kernel has already
    // moved past. That once left replicas' first requests uncaptured and uncounted: a replica
    // inherited its filter bit from the listening process that forked it, listened, and had the bit
    // cleared by the evaluation of its older fork event.
    let _busy = vigil_integration::idle_connections(8_000);
    let server = FakeApiServer::start();
    // Pods are ready when announced; they are expected 3 s later (the seed incident: new replicas of
    // a Deployment that should be monitored within their grace).
    let vigil = vigil_with(&server, "  unmonitored_grace: 3s\n");
    let announce = |name: &str, replica: &Pod| announce(&server, name, replica);
    let unmonitored_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // `vigil_unmonitored_pods` has no series (and no `# TYPE` line) while no pod is unmonitored: its
    // absence says so only once the pod-monitoring gauges are published at all.
    let monitoring_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    /// Replicas (pod name, simulated pod, port) and the requests each served, by pod name.
    type ScaledOut = (
        Vec<(String, Pod, u16)>,
        std::collections::BTreeMap<String, u64>,
    );
    let (replicas, mut want): ScaledOut = std::thread::scope(|scope| {
        // Throughout the scale-out, no pod may be left unmonitored past its grace.
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let watcher = {
            let (watching, unmonitored_seen, monitoring_seen, vigil) = (
                watching.clone(),
                unmonitored_seen.clone(),
                monitoring_seen.clone(),
                &vigil,
            );
            scope.spawn(move || {
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    let (_, body) = vigil.get("/metrics");
                    if family_of(&body, "vigil_pod_monitoring_status").is_some() {
                        monitoring_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if reports_unmonitored(&body) {
                        unmonitored_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        // Each replica serves as soon as it listens (captured from its listen on), while the next ones
        // start: the Deployment scales out from 2 to 10 under load. The last replica serves before its
        // pod event reaches vigil: its requests wait for the pod's labels instead of becoming
        // unlabelled series.
        let mut replicas = Vec::new();
        let mut want = std::collections::BTreeMap::new();
        for n in 0..REPLICAS {
            let (replica, port) = http_replica();
            let name = format!("web-{n}");
            if n < REPLICAS - 1 {
                announce(&name, &replica);
            }
            let tally = vigil_integration::http_client::keep_alive_load(
                port,
                2,
                250,
                &["/users/1".to_owned()],
            );
            want.insert(name.clone(), tally.values().sum::<u64>());
            replicas.push((name, replica, port));
        }
        std::thread::sleep(Duration::from_secs(4));
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        (replicas, want)
    });
    let (late_name, late, _) = &replicas[REPLICAS - 1];
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !requests_by_pod(&vigil).contains_key(late_name.as_str()),
        "no series before the pod is known"
    );
    announce(late_name, late);
    assert!(
        eventually(Duration::from_secs(10), || requests_by_pod(&vigil) == want),
        "series {:?}\nclients {want:?}\n{}",
        requests_by_pod(&vigil),
        // What could explain a difference: requests dropped, records lost, processes' states.
        vigil
            .metrics()
            .lines()
            .filter(|line| {
                line.starts_with("vigil_http_dropped_requests_total")
                    || line.starts_with("vigil_ebpf_events_lost_total")
                    || line.starts_with("vigil_capture_connections")
                    || line.starts_with("vigil_discovered_processes")
                    || line.starts_with("vigil_http_unpaired_responses_total")
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    let monitored = "vigil_monitored_pods{k8s_namespace_name=\"shop\"}";
    assert!(
        eventually(Duration::from_secs(8), || gauge(&vigil, monitored)
            == Some(REPLICAS as f64)),
        "monitored {:?}; pods {:?}",
        gauge(&vigil, monitored),
        pods(&vigil)
    );
    assert!(
        monitoring_seen.load(std::sync::atomic::Ordering::Relaxed),
        "the pod-monitoring gauges were published during the scale-out"
    );
    assert!(
        !unmonitored_seen.load(std::sync::atomic::Ordering::Relaxed),
        "a replica was reported unmonitored during the scale-out"
    );

    // A pod deleted while its process lingers: its requests keep their pod's labels, nothing is held.
    let (first_name, first, first_port) = &replicas[0];
    server.delete(&first.uid);
    assert!(eventually(Duration::from_secs(5), || !pods(&vigil)
        .iter()
        .any(|pod| pod["name"] == first_name.as_str())));
    std::thread::sleep(Duration::from_millis(500)); // a heartbeat: resolved labels are dropped
    vigil_integration::http_client::keep_alive_load(*first_port, 1, 100, &["/users/1".to_owned()]);
    *want.get_mut(first_name).unwrap() += 100;
    assert!(
        eventually(Duration::from_secs(5), || requests_by_pod(&vigil) == want),
        "series {:?}\nclients {want:?}",
        requests_by_pod(&vigil)
    );
    assert_eq!(
        vigil.metric("vigil_http_dropped_requests_total{reason=\"hold_full\"}"),
        0.0
    );
}

/// The discovery state of the process listening on `port`.
fn state_on(vigil: &Vigil, port: u16) -> Option<String> {
    vigil
        .listener_on(port)
        .and_then(|process| process["state"].as_str().map(str::to_owned))
}

#[test]
fn kubernetes_selectors_namespaces_and_annotations_decide_with_the_pod() {
    if !require_root("kubernetes_selectors_namespaces_and_annotations_decide_with_the_pod") {
        return;
    }
    let server = FakeApiServer::start();
    let kubeconfig = server.kubeconfig();
    let config = format!(
        "discovery:\n  instrument: [{{k8s_deployment_name: web, open_ports: '1-65535'}}]\n  \
         exclude_instrument: [{{k8s_pod_labels: {{tier: debug}}}}]\n  heartbeat_interval: 200ms\n\
         k8s:\n  node_name: {NODE}\n"
    );
    let vigil = Vigil::spawn(&config, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    vigil.wait_ready(Duration::from_secs(20));
    let start = || {
        let port = free_port();
        let mut simulated = Pod::start("node", &["server.js"], |command| {
            command
                .current_dir(workspace().join("integration/workloads/npm-server"))
                .env("PORT", port.to_string());
        });
        assert_eq!(simulated.read_line(), format!("listening {port}"));
        (simulated, port)
    };
    let settles_to = |port: u16, want: &str| {
        let settled = eventually(Duration::from_secs(5), || {
            state_on(&vigil, port).as_deref() == Some(want)
        });
        assert!(settled, "port {port}: {:?}", vigil.listener_on(port));
    };

    // The process runs before its pod is known: it waits, captured, and is decided when the pod comes.
    let (web, web_port) = start();
    settles_to(web_port, "pending_metadata");
    server.apply(pod(
        "shop",
        "web-0",
        &web.uid,
        NODE,
        &web.container_id,
        LONG_AGO,
    ));
    settles_to(web_port, "instrumented");

    // Another Deployment's pod: no selector matches it.
    let (other, other_port) = start();
    let mut other_pod = pod(
        "shop",
        "api-0",
        &other.uid,
        NODE,
        &other.container_id,
        LONG_AGO,
    );
    other_pod["metadata"]["ownerReferences"][0]["name"] = Value::from("api-6c9d8b7f5");
    other_pod["metadata"]["labels"]["pod-template-hash"] = Value::from("6c9d8b7f5");
    server.apply(other_pod.clone());
    settles_to(other_port, "candidate");
    // Opted in by annotation: instrumented although no selector matches.
    other_pod["metadata"]["annotations"] = serde_json::json!({"vigil.io/instrument": "true"});
    server.apply(other_pod);
    settles_to(other_port, "instrumented");

    // A web pod labelled for exclusion, and a web pod in an excluded namespace.
    let (debug, debug_port) = start();
    let mut debug_pod = pod(
        "shop",
        "web-debug",
        &debug.uid,
        NODE,
        &debug.container_id,
        LONG_AGO,
    );
    debug_pod["metadata"]["labels"]["tier"] = Value::from("debug");
    server.apply(debug_pod);
    settles_to(debug_port, "excluded");
    let (system, system_port) = start();
    server.apply(pod(
        "kube-system",
        "web-sys",
        &system.uid,
        NODE,
        &system.container_id,
        LONG_AGO,
    ));
    settles_to(system_port, "excluded");
    assert!(
        vigil.listener_on(system_port).unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("k8s.excluded_namespaces")
    );
    let _keep = (web, other, debug, system);
}

#[test]
fn owners_resolve_through_the_api_and_fall_back_to_the_naming_rule() {
    if !require_root("owners_resolve_through_the_api_and_fall_back_to_the_naming_rule") {
        return;
    }
    let server = FakeApiServer::start();
    // A ReplicaSet whose name does not follow the Deployment's naming rule: only the API can tell.
    server.put_object(
        "/apis/apps/v1/namespaces/shop/replicasets/legacy-frontend",
        serde_json::json!({"name": "legacy-frontend", "namespace": "shop", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "storefront", "uid": "d1", "controller": true}
        ]}),
    );
    let mut by_api = api_pod("storefront-0", "uid-api");
    by_api["metadata"]["ownerReferences"][0]["name"] = Value::from("legacy-frontend");
    server.apply(by_api);
    // The API does not know this ReplicaSet (404): the naming rule stands.
    server.apply(api_pod("web-0", "uid-rule"));
    // A bare pod: no owner to look up, and it is still listed.
    let mut bare = api_pod("debug-shell", "uid-bare");
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    server.apply(bare);
    let vigil = vigil_with(&server, "");
    let owner = |name: &str| {
        pods(&vigil)
            .into_iter()
            .find(|pod| pod["name"] == name)
            .map(|pod| pod["owner"].clone())
    };
    assert!(
        eventually(Duration::from_secs(10), || owner("storefront-0")
            == Some(Value::from("Deployment/storefront"))
            && owner("web-0") == Some(Value::from("Deployment/web"))
            && owner("debug-shell") == Some(Value::Null)),
        "owners: {:?}",
        pods(&vigil)
    );
    assert!(
        server.requests().iter().any(|target| target
            .starts_with("/apis/apps/v1/namespaces/shop/replicasets/legacy-frontend")),
        "looked up through the API"
    );
}

/// A pod of the service-name scenario: its name, environment, annotations and labels, and the
/// `service_name` and `service_namespace` its series must carry.
type ServiceCase<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [(&'a str, &'a str)],
    &'a [(&'a str, &'a str)],
    &'a str,
    &'a str,
);

#[test]
fn service_names_follow_otel_variables_annotations_the_name_label_and_the_owner() {
    if !require_root("service_names_follow_otel_variables_annotations_the_name_label_and_the_owner")
    {
        return;
    }
    let server = FakeApiServer::start();
    let vigil = vigil_with(&server, "");
    // (pod name, environment, annotations, labels) → the service_name and service_namespace wanted.
    let cases: [ServiceCase; 5] = [
        (
            "svc-env",
            &[("OTEL_SERVICE_NAME", "checkout")],
            &[],
            &[],
            "checkout",
            "shop",
        ),
        (
            "svc-attributes",
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=cart,service.namespace=retail",
            )],
            &[],
            &[],
            "cart",
            "retail",
        ),
        (
            "svc-annotated",
            &[],
            &[("resource.opentelemetry.io/service.name", "front")],
            &[],
            "front",
            "shop",
        ),
        (
            "svc-labelled",
            &[],
            &[],
            &[("app.kubernetes.io/name", "storefront")],
            "storefront",
            "shop",
        ),
        ("svc-owned", &[], &[], &[], "web", "shop"),
    ];
    let mut pods = Vec::new();
    for (n, (name, environment, annotations, labels, _, _)) in cases.iter().enumerate() {
        let port = free_port();
        let mut simulated = Pod::start("node", &["server.js"], |command| {
            command
                .current_dir(workspace().join("integration/workloads/http-server"))
                .env("PORT", port.to_string())
                .envs(environment.iter().copied());
        });
        assert_eq!(simulated.read_line(), format!("listening {port}"));
        let mut announced = api_pod(name, &format!("uid-svc-{n}"));
        announced["metadata"]["uid"] = simulated.uid.clone().into();
        announced["status"]["containerStatuses"][0]["containerID"] =
            format!("containerd://{}", simulated.container_id).into();
        for (key, value) in *annotations {
            announced["metadata"]["annotations"][*key] = (*value).into();
        }
        for (key, value) in *labels {
            announced["metadata"]["labels"][*key] = (*value).into();
        }
        server.apply(announced);
        pods.push((simulated, port));
    }
    let services = || {
        let mut services = std::collections::BTreeMap::new();
        for (labels, _) in samples(
            &vigil.metrics(),
            "http_server_request_duration_seconds_count",
        ) {
            services.insert(
                labels["k8s_pod_name"].clone(),
                (
                    labels["service_name"].clone(),
                    labels["service_namespace"].clone(),
                ),
            );
        }
        services
    };
    let want: std::collections::BTreeMap<String, (String, String)> = cases
        .iter()
        .map(|(name, _, _, _, service, namespace)| {
            (
                name.to_string(),
                (service.to_string(), namespace.to_string()),
            )
        })
        .collect();
    // One request a pod, sent until each pod's series shows (its pod is known and it is published).
    let named = eventually(Duration::from_secs(15), || {
        for (_, port) in &pods {
            http_client::get_once(*port, "/");
        }
        services() == want
    });
    assert!(named, "series {:?}\nwanted {want:?}", services());
}

/// Request counts of the series of pod `uid`, by whether they carry its pod's labels (`k8s_pod_name`
/// set) or only what the node knows.
fn requests_of_pod(vigil: &Vigil, uid: &str) -> (u64, u64) {
    let (_, body) = vigil.get("/metrics");
    let (mut labelled, mut node_only) = (0, 0);
    for (labels, value) in samples(&body, "http_server_request_duration_seconds_count") {
        if labels.get("k8s_pod_uid").map(String::as_str) != Some(uid) {
            continue;
        }
        match labels.get("k8s_pod_name") {
            Some(_) => labelled += value as u64,
            None => {
                assert_eq!(labels.get("k8s_node_name").map(String::as_str), Some(NODE));
                assert_eq!(labels.get("service_name").map(String::as_str), Some("node"));
                node_only += value as u64;
            }
        }
    }
    (labelled, node_only)
}

#[test]
fn an_unreachable_api_server_leaves_no_pod_unmonitored_and_its_metadata_returns() {
    if !require_root("an_unreachable_api_server_leaves_no_pod_unmonitored_and_its_metadata_returns")
    {
        return;
    }
    let server = FakeApiServer::start();
    let vigil = vigil_with(&server, "  unmonitored_grace: 2s\n");
    let announce = |name: &str, replica: &Pod| announce(&server, name, replica);
    let monitored = "vigil_monitored_pods{k8s_namespace_name=\"shop\"}";
    let (old, _) = http_replica();
    announce("web-0", &old);
    assert!(
        eventually(Duration::from_secs(10), || gauge(&vigil, monitored)
            == Some(1.0)),
        "web-0 monitored: {:?}",
        pods(&vigil)
    );
    assert_eq!(gauge(&vigil, "vigil_kube_watch_up"), Some(1.0));

    let unmonitored_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (new, new_port) = std::thread::scope(|scope| {
        // Throughout the outage and after it, no pod may be reported unmonitored.
        let watcher = {
            let (watching, unmonitored_seen, vigil) =
                (watching.clone(), unmonitored_seen.clone(), &vigil);
            scope.spawn(move || {
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    let (_, body) = vigil.get("/metrics");
                    if reports_unmonitored(&body) {
                        unmonitored_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        server.set_reachable(false);
        assert!(
            eventually(Duration::from_secs(10), || gauge(
                &vigil,
                "vigil_kube_watch_up"
            ) == Some(0.0)),
            "the watch failure is seen"
        );
        // During the outage web-0's pod is deleted and its process ends, and web-1 starts and serves
        // (its pod created in the API, which vigil cannot see).
        server.delete(&old.uid);
        drop(old);
        let (new, new_port) = http_replica();
        announce("web-1", &new);
        http_client::keep_alive_load(new_port, 1, 100, &["/users/1".to_owned()]);
        // Its requests are published with the labels the node knows, not held for the outage.
        assert!(
            eventually(Duration::from_secs(10), || requests_of_pod(
                &vigil, &new.uid
            ) == (0, 100)),
            "node-only series of web-1: {:?}",
            requests_of_pod(&vigil, &new.uid)
        );
        // Past the grace: web-0 is gone without vigil knowing, web-1 is not known to it.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(gauge(&vigil, monitored), Some(1.0), "verdicts kept");

        server.set_reachable(true);
        assert!(
            eventually(Duration::from_secs(40), || gauge(
                &vigil,
                "vigil_kube_watch_up"
            ) == Some(1.0)),
            "the pods are listed again"
        );
        assert!(
            eventually(Duration::from_secs(10), || pod_names(&vigil) == ["web-1"]),
            "pods {:?}",
            pod_names(&vigil)
        );
        assert!(
            eventually(Duration::from_secs(10), || gauge(&vigil, monitored)
                == Some(1.0)),
            "web-1 monitored: {:?}",
            pods(&vigil)
        );
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        (new, new_port)
    });
    assert!(
        !unmonitored_seen.load(std::sync::atomic::Ordering::Relaxed),
        "a pod was reported unmonitored because of vigil's outage"
    );
    // Metadata restored: new requests carry web-1's pod labels.
    std::thread::sleep(Duration::from_millis(500)); // a heartbeat: resolved labels are dropped
    http_client::keep_alive_load(new_port, 1, 50, &["/users/1".to_owned()]);
    assert!(
        eventually(Duration::from_secs(10), || requests_of_pod(
            &vigil, &new.uid
        ) == (50, 100)),
        "web-1 series: {:?}",
        requests_of_pod(&vigil, &new.uid)
    );
    let (_, body) = vigil.get("/metrics");
    let restored: Vec<_> = samples(&body, "http_server_request_duration_seconds_count")
        .into_iter()
        .filter(|(labels, _)| labels.get("k8s_pod_name").is_some())
        .collect();
    assert!(
        restored.iter().all(|(labels, _)| {
            labels.get("service_name").map(String::as_str) == Some("web")
                && labels.get("k8s_deployment_name").map(String::as_str) == Some("web")
                && labels.get("k8s_pod_name").map(String::as_str) == Some("web-1")
        }),
        "{restored:?}"
    );
    drop(new);
}
