//! The binaries under test, built once per test process with the tests' own profile.
//!
//! Cargo builds a test's own package, not the other binaries of the workspace, so the harness
//! runs `cargo build -p weir -p weir-echo` itself, once: the first test to ask builds,
//! the others wait for it. The build goes to the target directory this test binary lives in,
//! `<target>/<profile>/deps/<test>`, and the binaries are then `<target>/<profile>/<name>`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The `weir` gateway binary.
pub fn weir() -> PathBuf {
    profile_dir().join("weir")
}

/// The `weir-echo` backend binary.
pub fn echo() -> PathBuf {
    profile_dir().join("weir-echo")
}

/// The mock LLM provider (`examples/mock-llm`).
pub fn mock_llm() -> PathBuf {
    profile_dir().join("weir-mock-llm")
}

fn profile_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> PathBuf {
    let test_binary = env::current_exe().expect("a test binary knows its own path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir
        .parent()
        .expect("a profile directory has a parent");

    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "weir",
            "-p",
            "weir-echo",
            "-p",
            "weir-mock-llm",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
        None => panic!("cannot tell the profile of {}", test_binary.display()),
    }
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build -p weir -p weir-echo failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir.to_owned()
}
