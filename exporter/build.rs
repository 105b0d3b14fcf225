//! Builds the eBPF programs (`vigil-ebpf`) with the nightly toolchain and bpf-linker, into OUT_DIR, where
//! `kernel::EBPF_OBJECT` embeds them; and records the git revision for `vigil_build_info`.
use std::path::Path;

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the exporter crate sits inside the workspace");
    let ebpf_dir = workspace.join("exporter-ebpf");
    let ebpf_dir = ebpf_dir.to_str().expect("the workspace path is UTF-8");
    aya_build::build_ebpf(
        [Package {
            name: "vigil-ebpf",
            root_dir: ebpf_dir,
            no_default_features: false,
            features: &[],
        }],
        Toolchain::default(),
    )?;
    // aya-build watches the eBPF crate; the contract crate it compiles in must trigger a rebuild too.
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("exporter-common").display()
    );

    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|revision| revision.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=VIGIL_GIT_REVISION={revision}");
    Ok(())
}
