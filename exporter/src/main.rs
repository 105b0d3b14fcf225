//! The `vigil` binary: flags, configuration and privileges, then [`vigil::run`].
//!
//! Exit codes: 0 after SIGTERM/SIGINT or `--check-config`; 64 for a bad flag, configuration or web
//! configuration file;
//! 77 when capabilities are missing; 1 for any other failure.

use std::process::ExitCode;

use clap::Parser as _;
use vigil::{admin::WebSecurity, cli::Cli, config::Config, privileges};

const EXIT_USAGE: u8 = 64;
const EXIT_NO_PERMISSION: u8 = 77;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let env = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)));
    let config = match Config::load(cli.config.as_deref(), env, &cli.overrides()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("vigil: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The web configuration file (TLS, users) is checked with the rest: a bad one stops vigil here.
    let web_config = Some(&config.web.config_file)
        .filter(|path| !path.is_empty())
        .map(std::path::Path::new);
    let security = match WebSecurity::load(web_config) {
        Ok(security) => security,
        Err(error) => {
            eprintln!("vigil: {error} (web.config_file)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if cli.check_config {
        print!("{}", config.to_yaml());
        return ExitCode::SUCCESS;
    }

    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log.level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Err(error) = privileges::check(&config.paths.procfs) {
        eprintln!("vigil: {error}");
        return ExitCode::from(EXIT_NO_PERMISSION);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vigil: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(vigil::run(config, security)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vigil: {error:#}");
            ExitCode::FAILURE
        }
    }
}
