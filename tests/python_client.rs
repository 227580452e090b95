//! The Python package in clients/python, as a user gets it: `pip install` into a fresh
//! venv, `mypy --strict` on the wrapper and its tests, then its pytest suite against the
//! real server binary (started by the tests' conftest on 127.0.0.1:0 with a temp data dir).
//!
//! Needs python3 (3.10+, with venv) and PyPI (pip's cache makes later runs quick).
//! Nothing is skipped: no Python or no PyPI fails the test.

mod client_tools;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use client_tools::{repo, run};

fn package() -> PathBuf {
    repo().join("clients/python")
}

/// A new venv in `dir` with clients/python[test] installed; its python.
fn fresh_venv(dir: &Path) -> PathBuf {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    run(
        "python3 -m venv (Debian: apt-get install python3-venv)",
        Command::new(python).arg("-m").arg("venv").arg(dir),
    );
    let venv_python = dir.join("bin/python");
    run(
        "pip install ./clients/python[test] into a fresh venv",
        Command::new(&venv_python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
            ])
            .arg(format!("{}[test]", package().display())),
    );
    venv_python
}

#[test]
fn python_package_installs_type_checks_and_passes_its_tests_against_the_server() {
    let venv = tempfile::tempdir().expect("temp dir");
    let python = fresh_venv(venv.path());

    // The wrapper from its sources; the tests from a directory outside the source tree,
    // so they import the installed package (its py.typed and .pyi must have shipped).
    let outside = tempfile::tempdir().expect("temp dir");
    let mypy = |what: &str, cwd: &Path, target: &[&Path]| {
        run(
            what,
            Command::new(&python)
                .current_dir(cwd)
                .args(["-m", "mypy", "--strict", "--cache-dir"])
                .arg(outside.path().join(".mypy_cache"))
                .arg("--config-file")
                .arg(package().join("pyproject.toml"))
                .args(target),
        )
    };
    let tests = package().join("tests");
    mypy(
        "mypy --strict profileimage",
        &package(),
        &[Path::new("profileimage")],
    );
    mypy(
        "mypy --strict tests (against the installed package)",
        outside.path(),
        &[&tests],
    );
    let output = run(
        "pytest clients/python/tests",
        Command::new(&python)
            .current_dir(outside.path())
            .env("PROFILE_IMAGE_BIN", env!("CARGO_BIN_EXE_profile-image"))
            .env("PROFILE_IMAGE_CORPUS", common::corpus(""))
            .env("PROFILE_IMAGE_TLS", repo().join("tests/tls"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir"])
            .arg(package())
            .arg(&tests),
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    println!("{summary}");
    let last = summary.lines().last().unwrap_or_default();
    assert!(
        last.contains(" passed") && !last.contains("failed") && !last.contains("skipped"),
        "unexpected pytest summary {last:?}"
    );
}
