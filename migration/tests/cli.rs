//! The CLI's contract for bad input: one line on stderr, exit code 1, no panic,
//! no password echoed.

use std::process::{Command, Output};

fn migration(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("the migration binary runs")
}

fn assert_one_line_failure(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected, got: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_database_url_says_how_to_give_one() {
    let output = migration(&["status"]);
    assert_one_line_failure(&output, "set DATABASE_URL or pass -u");
}

#[test]
fn a_malformed_database_url_is_refused_without_echoing_it() {
    let output = migration(&["-u", "postgres://app:hunter2@[not-a-host", "up"]);
    assert_one_line_failure(&output, "DATABASE_URL is not a valid URL");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));
}

#[test]
fn a_non_postgres_url_is_refused() {
    let output = migration(&["-u", "mysql://root@localhost/app", "up"]);
    assert_one_line_failure(&output, "must start with postgres://");
}

#[test]
fn an_unreachable_server_fails_fast_with_the_reason_and_no_password() {
    // Port 1 on loopback: nothing listens there, the kernel refuses at once.
    let output = migration(&["-u", "postgres://app:hunter2@127.0.0.1:1/app", "up"]);
    assert_one_line_failure(
        &output,
        "cannot connect to postgres://app:***@127.0.0.1:1/app",
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("refused"));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let output = migration(&["sideways"]);
    assert_eq!(output.status.code(), Some(2));
}
