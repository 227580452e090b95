//! The contract as a product: buf lint (STANDARD) passes, buf breaking (FILE) finds no
//! change against the committed baseline image and does catch one, and every checked-in
//! generated client file is what scripts/generate-clients makes from proto/.

mod client_tools;

use std::process::Command;

use client_tools::{buf, repo, run, run_failing};

#[test]
fn buf_lint_standard_passes() {
    run(
        "buf lint proto",
        Command::new(buf())
            .current_dir(repo())
            .args(["lint", "proto"]),
    );
}

#[test]
fn contract_has_no_breaking_change_against_the_baseline() {
    run(
        "buf breaking proto --against proto/baseline.binpb (a deliberate break must update \
         the baseline: buf build proto --exclude-source-info -o proto/baseline.binpb)",
        Command::new(buf()).current_dir(repo()).args([
            "breaking",
            "proto",
            "--against",
            "proto/baseline.binpb",
        ]),
    );
}

#[test]
fn buf_breaking_reports_a_renamed_field() {
    let copy = tempfile::tempdir().expect("temp dir");
    let proto = std::fs::read_to_string(repo().join("proto/profileimage/v1/profile_image.proto"))
        .expect("read the contract");
    let renamed = proto.replacen("string etag = 9;", "string entity_tag = 9;", 1);
    assert_ne!(proto, renamed, "the contract has ProfileImage.etag = 9");
    let dir = copy.path().join("profileimage/v1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("profile_image.proto"), renamed).expect("write");
    std::fs::copy(repo().join("proto/buf.yaml"), copy.path().join("buf.yaml")).expect("copy");
    // The vendored google.rpc files the contract imports.
    let rpc = copy.path().join("google/rpc");
    std::fs::create_dir_all(&rpc).expect("mkdir");
    for file in ["status.proto", "error_details.proto"] {
        std::fs::copy(repo().join("proto/google/rpc").join(file), rpc.join(file)).expect("copy");
    }
    let report = run_failing(
        "buf breaking on a renamed field",
        Command::new(buf())
            .arg("breaking")
            .arg(copy.path())
            .arg("--against")
            .arg(repo().join("proto/baseline.binpb")),
    );
    assert!(
        report.contains(r#"changed name from "etag" to "entity_tag""#),
        "buf breaking output:\n{report}"
    );
}

#[test]
fn generated_client_files_match_the_proto() {
    run(
        "scripts/generate-clients --check (run scripts/generate-clients and commit)",
        Command::new(repo().join("scripts/generate-clients"))
            .arg("--check")
            .env("CLIENT_TOOLS_DIR", client_tools::tools_dir()),
    );
}
