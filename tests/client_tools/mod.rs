//! The tools the client tests run (scripts/client-tools installs them once): a venv with
//! grpcio-tools, mypy-protobuf, grpcurl and grpcio-reflection, and clients/typescript's
//! node_modules with buf.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<target dir>/client-tools` (CARGO_TARGET_TMPDIR is `<target dir>/tmp`).
pub fn tools_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("client-tools")
}

/// The tools venv's python, after installing whatever is missing.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = run(
            "scripts/client-tools",
            Command::new(repo().join("scripts/client-tools")).env("CLIENT_TOOLS_DIR", tools_dir()),
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// A program installed in the tools venv (grpcurl, ...).
pub fn venv_bin(name: &str) -> PathBuf {
    python().with_file_name(name)
}

/// buf from the npm package @bufbuild/buf.
pub fn buf() -> PathBuf {
    python();
    repo().join("clients/typescript/node_modules/.bin/buf")
}

/// Runs `command` and returns its output; panics with both streams unless it exits 0.
pub fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {command:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// Runs `command` expecting it to fail; returns stdout + stderr.
pub fn run_failing(what: &str, command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "{what} succeeded but should fail:\n{text}"
    );
    text
}
