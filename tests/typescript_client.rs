//! The TypeScript package in clients/typescript: `npm ci` (scripts/client-tools), then
//! `npm test`: tsc in strict mode, and node's test runner against the real server binary
//! (started by the tests' fixtures on 127.0.0.1:0 with a temp data dir).
//!
//! Needs node 20+ and npm, and the npm registry on the first run.

mod client_tools;
mod common;

use std::process::Command;

use client_tools::{repo, run};

#[test]
fn typescript_package_type_checks_and_passes_its_tests_against_the_server() {
    client_tools::python(); // npm ci
    let output = run(
        "npm test in clients/typescript",
        Command::new("npm")
            .current_dir(repo().join("clients/typescript"))
            .args(["test", "--silent"])
            .env("PROFILE_IMAGE_BIN", env!("CARGO_BIN_EXE_profile-image"))
            .env("PROFILE_IMAGE_CORPUS", common::corpus(""))
            .env("PROFILE_IMAGE_TLS", repo().join("tests/tls")),
    );
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    let count = |label: &str| -> usize {
        report
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} line in node's report"))
    };
    assert!(count("# pass ") >= 13, "fewer tests than written ran");
    assert_eq!(count("# fail "), 0);
    assert_eq!(count("# skipped "), 0);
}
