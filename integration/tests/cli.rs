//! The `vigil` binary's start-up contract: a bad flag or configuration is one clear line and exit 64,
//! before anything is loaded into the kernel; `--check-config` prints the effective configuration.

use std::process::Command;

use vigil_integration::vigil_binary;

/// Runs vigil with a config file holding `yaml`, extra args and env; returns (exit code, stdout, stderr).
fn run(yaml: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let mut command = Command::new(vigil_binary());
    if let Some(yaml) = yaml {
        std::fs::write(file.path(), yaml).unwrap();
        command.arg("--config").arg(file.path());
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_refused(yaml: Option<&str>, args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let (code, _, stderr) = run(yaml, args, env);
    assert_eq!(
        code, 64,
        "exit code for {yaml:?} {args:?} {env:?}; stderr: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
}

#[test]
fn unknown_key_exits_64_naming_the_key_and_file() {
    assert_refused(
        Some("discovery:\n  reconcile_intervall: 5s\n"),
        &[],
        &[],
        &["reconcile_intervall", ".yaml"],
    );
}

#[test]
fn bad_duration_exits_64_naming_the_key() {
    assert_refused(
        Some("discovery:\n  reconcile_interval: often\n"),
        &[],
        &[],
        &["discovery.reconcile_interval", ".yaml"],
    );
}

#[test]
fn bad_port_range_exits_64() {
    assert_refused(
        Some("discovery:\n  instrument:\n    - open_ports: \"8080-80\"\n"),
        &[],
        &[],
        &["discovery.instrument", "8080 is above 80"],
    );
}

#[test]
fn unreadable_file_exits_64_naming_it() {
    assert_refused(
        None,
        &["--config", "/nonexistent/vigil.yaml"],
        &[],
        &["/nonexistent/vigil.yaml"],
    );
}

#[test]
fn bad_flags_and_environment_exit_64() {
    assert_refused(
        None,
        &["--web.listen-address", "nowhere"],
        &[],
        &["web.listen_address", "command-line flags"],
    );
    assert_refused(None, &["--log.level", "info,=["], &[], &["log.level"]);
    assert_refused(
        None,
        &[],
        &[("VIGIL_EBPF__DRAIN_INTERVAL", "0s")],
        &["VIGIL_EBPF__DRAIN_INTERVAL"],
    );
    let (code, _, stderr) = run(None, &["--no-such-flag"], &[]);
    assert_eq!(code, 64, "{stderr}");
}

#[test]
fn environment_overrides_file_and_flag_overrides_environment() {
    let yaml = "web:\n  listen_address: \"127.0.0.1:1111\"\ndiscovery:\n  reconcile_interval: 7s\n";
    let env = [("VIGIL_WEB__LISTEN_ADDRESS", "127.0.0.1:2222")];
    let (code, stdout, stderr) = run(Some(yaml), &["--check-config"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("listen_address: 127.0.0.1:2222"),
        "{stdout}"
    );
    assert!(stdout.contains("reconcile_interval: 7s"), "{stdout}");
    let (_, stdout, _) = run(
        Some(yaml),
        &["--check-config", "--web.listen-address", ":3333"],
        &env,
    );
    assert!(stdout.contains("listen_address: '[::]:3333'"), "{stdout}");
}
