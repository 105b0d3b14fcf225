use std::io::Write as _;

use super::*;

fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load(Some(file.path()), env, &[])
}

fn error_of(yaml: &str) -> String {
    load_yaml(yaml, &[])
        .expect_err("the configuration must be refused")
        .to_string()
}

#[test]
fn embedded_default_is_valid() {
    let config = Config::load(None, [], &[]).unwrap();
    assert_eq!(config.web.listen_address.port(), 10420);
    assert!(config.web.listen_address.ip().is_unspecified());
    assert_eq!(config.ebpf.drain_interval, Duration::from_millis(20));
    let ports = config.discovery.instrument[0].open_ports.as_ref().unwrap();
    assert!(ports.contains(1) && ports.contains(65535));
}

#[test]
fn unknown_key_is_named() {
    let error = error_of("discovery:\n  reconcile_intervall: 10s\n");
    assert!(error.contains("reconcile_intervall"), "{error}");
}

#[test]
fn bad_duration_names_key_and_file() {
    let error = error_of("ebpf:\n  drain_interval: soon\n");
    assert!(error.contains("ebpf.drain_interval"), "{error}");
    assert!(error.contains(".tmp"), "the file is named: {error}");
}

#[test]
fn bad_port_ranges_are_refused() {
    for (ports, why) in [
        ("\"9000-80\"", "is above"),
        ("70000", "expected 1-65535"),
        ("\"80,http\"", "invalid port"),
        ("0", "expected 1-65535"),
    ] {
        let error = error_of(&format!(
            "discovery:\n  instrument:\n    - open_ports: {ports}\n"
        ));
        assert!(error.contains(why), "{ports}: {error}");
        assert!(error.contains("discovery.instrument"), "{ports}: {error}");
    }
}

#[test]
fn port_lists_accept_numbers_strings_and_ranges() {
    let config = load_yaml(
        "discovery:\n  instrument:\n    - open_ports: [80, \"8000-8002,9000\"]\n",
        &[],
    )
    .unwrap();
    let ports = config.discovery.instrument[0].open_ports.as_ref().unwrap();
    assert_eq!(ports.to_string(), "80,8000-8002,9000");
    assert!(ports.contains(8001) && ports.contains(9000) && !ports.contains(8003));
}

#[test]
fn bad_listen_address_and_log_level_are_refused() {
    assert!(error_of("web:\n  listen_address: \"localhost\"\n").contains("web.listen_address"));
    assert!(error_of("log:\n  level: \"info,=[\"\n").contains("log.level"));
}

#[test]
fn ring_and_map_sizes_are_checked() {
    let error = error_of("ebpf:\n  served_ports_entries: 0\n");
    assert!(
        error.contains("ebpf.served_ports_entries") && error.contains("between 1 and"),
        "{error}"
    );
    let error = error_of("ebpf:\n  process_events_ring_bytes: 5000\n");
    assert!(error.contains("power of two"), "{error}");
}

#[test]
fn unreadable_file_is_named() {
    let error = Config::load(
        Some(std::path::Path::new("/nonexistent/vigil.yaml")),
        [],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("/nonexistent/vigil.yaml"), "{error}");
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let yaml = "web:\n  listen_address: \"127.0.0.1:1111\"\nebpf:\n  drain_interval: 30ms\n";
    let env = [
        ("VIGIL_WEB__LISTEN_ADDRESS", "127.0.0.1:2222"),
        ("VIGIL_EBPF__DRAIN_INTERVAL", "40ms"),
        ("UNRELATED", "x"),
    ];
    let config = load_yaml(yaml, &env).unwrap();
    assert_eq!(config.web.listen_address.port(), 2222);
    assert_eq!(config.ebpf.drain_interval, Duration::from_millis(40));

    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let flags = [("web.listen_address", "127.0.0.1:3333".to_owned())];
    let config = Config::load(Some(file.path()), env, &flags).unwrap();
    assert_eq!(config.web.listen_address.port(), 3333);
}

#[test]
fn unknown_environment_key_is_refused() {
    let error = load_yaml("{}", &[("VIGIL_WEB__LISTEN_ADRESS", ":1")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("listen_adress"), "{error}");
    assert!(
        error.contains("environment variable VIGIL_WEB__LISTEN_ADRESS"),
        "{error}"
    );
}

#[test]
fn bad_environment_value_names_the_variable() {
    let error = load_yaml("{}", &[("VIGIL_EBPF__DRAIN_INTERVAL", "fast")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("environment variable VIGIL_EBPF__DRAIN_INTERVAL"),
        "{error}"
    );
}

#[test]
fn effective_config_round_trips_through_yaml() {
    let config = Config::load(None, [], &[]).unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(config.to_yaml().as_bytes()).unwrap();
    assert_eq!(Config::load(Some(file.path()), [], &[]).unwrap(), config);
}

#[test]
fn min_process_age_is_auto_or_a_duration() {
    let config = Config::load(None, [], &[]).unwrap();
    assert_eq!(config.discovery.min_process_age, MinProcessAge::Auto);
    let config = load_yaml("discovery:\n  min_process_age: 2s\n", &[]).unwrap();
    assert_eq!(
        config.discovery.min_process_age,
        MinProcessAge::Fixed(Duration::from_secs(2))
    );
    assert!(config.to_yaml().contains("min_process_age: 2s"));
    let error = error_of("discovery:\n  min_process_age: sometimes\n");
    assert!(error.contains("expected `auto` or a duration"), "{error}");
    assert!(error.contains("discovery.min_process_age"), "{error}");
}

#[test]
fn min_process_age_bounds_must_be_ordered() {
    let error = error_of("discovery:\n  min_process_age_min: 20s\n");
    assert!(
        error.contains(
            "discovery.min_process_age_min (20s) is above discovery.min_process_age_max (10s)"
        ),
        "{error}"
    );
}

#[test]
fn kubernetes_selectors_are_globs_and_maps_of_globs() {
    let config = load_yaml(
        "discovery:\n  exclude_instrument:\n    - k8s_pod_labels: {app: 'db-*'}\n      k8s_namespace: shop\n",
        &[],
    )
    .unwrap();
    let selector = &config.discovery.exclude_instrument[0];
    assert!(
        selector
            .k8s_pod_labels
            .as_ref()
            .unwrap()
            .contains_key("app")
    );
    assert!(selector.k8s_namespace.is_some());
    let error = error_of("discovery:\n  instrument:\n    - k8s_namespace: '[unclosed'\n");
    assert!(
        error.contains("unclosed character class"),
        "a bad glob is named: {error}"
    );
}

#[test]
fn route_patterns_must_be_paths() {
    let config = load_yaml("metrics:\n  routes: ['/users/{id}']\n", &[]).unwrap();
    assert_eq!(config.metrics.routes, ["/users/{id}"]);
    let error = error_of("metrics:\n  routes: ['users/{id}']\n");
    assert!(
        error.contains("metrics.routes: \"users/{id}\" does not start with /"),
        "{error}"
    );
}

#[test]
fn metrics_limits_are_checked() {
    let error = error_of("metrics:\n  ttl: 10ms\n");
    assert!(error.contains("metrics.ttl must be at least 1s"), "{error}");
    let error = error_of("metrics:\n  max_routes_per_service: 0\n");
    assert!(
        error.contains("metrics.max_routes_per_service must be at least 1"),
        "{error}"
    );
}

#[test]
fn histogram_buckets_default_to_beylas_and_are_checked() {
    let config = load_yaml("", &[]).unwrap();
    assert_eq!(config.metrics.duration_buckets.len(), 15);
    assert_eq!(config.metrics.body_size_buckets.last(), Some(&8192.0));
    assert!(config.metrics.body_sizes, "on by default");
    let config = load_yaml("metrics:\n  body_sizes: false\n", &[]).unwrap();
    assert!(!config.metrics.body_sizes);
    let config = load_yaml("metrics:\n  body_size_buckets: [0, 100, 1000]\n", &[]).unwrap();
    assert_eq!(config.metrics.body_size_buckets, [0.0, 100.0, 1000.0]);
    for bad in ["[]", "[1, 1]", "[2, 1]", "[-1, 1]"] {
        let error = error_of(&format!("metrics:\n  duration_buckets: {bad}\n"));
        assert!(
            error.contains(
                "metrics.duration_buckets must be non-negative, finite and strictly increasing"
            ),
            "{bad}: {error}"
        );
    }
}
