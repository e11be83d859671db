//! (b) and (b1) with pgbench: `-M prepared`, one connection and one thread
//! per client, per-transaction logs (`-l`) for the same nearest-rank
//! percentiles as the Rust variants.
//!
//! pgbench keeps a client's variables across its transactions, so each
//! client carries its session's current version from one rotation to the
//! next (`\gset`). `-D version=-1` marks "not started": the first
//! transaction of each client also computes its `jti` (and, for (b1), sets
//! the acting user for the session); it is left out of the statistics, as
//! the Rust clients' warm-up calls are.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use service::Config;

use crate::Env;
use crate::report::RotationRow;
use crate::rotation::{Variant, client_jti_sql};

/// The service's statement with its `$n` parameters renamed to pgbench
/// variables, in the service's order (jti, user, version, idle, absolute,
/// grace).
pub fn service_script(service_sql: &str) -> Result<String> {
    let names = ["jti", "uid", "version", "idle", "absolute", "grace"];
    let mut sql = service_sql.trim().to_owned();
    // From $6 down, so that $1 never matches the start of a $1x.
    for (i, name) in names.iter().enumerate().rev() {
        let placeholder = format!("${}", i + 1);
        ensure!(
            sql.matches(&placeholder).count() == 1,
            "expected {placeholder} exactly once in {sql:?}"
        );
        sql = sql.replace(&placeholder, &format!(":{name}"));
    }
    ensure!(!sql.contains('$'), "unexpected parameter left in {sql:?}");
    ensure!(!sql.contains('\n'), "the statement must be one line");
    Ok(format!(
        "\\set uid :client_id + 1\n\
         \\if :version < 0\n\
         SELECT {jti} AS jti \\gset\n\
         \\set version 0\n\
         \\endif\n\
         {sql} \\gset\n",
        jti = client_jti_sql(":uid::int"),
    ))
}

/// The floor: the function's UPDATE alone, as one autocommit statement.
/// The acting user is set once per connection (`set_config(…, false)`, in
/// the client's first transaction), so the same own-row UPDATE policy as
/// in the function decides, at no extra statement per rotation.
pub fn update_script() -> String {
    format!(
        "\\set uid :client_id + 1\n\
         \\if :version < 0\n\
         SELECT set_config('auth.user_id', :uid::text, false) AS acting, {jti} AS jti \\gset\n\
         \\set version 0\n\
         \\endif\n\
         UPDATE auth.refresh_session AS r SET refresh_version = r.refresh_version + 1, \
         last_used_at = now(), expires_at = least(now() + :idle::bigint * interval '1 microsecond', \
         r.created_at + :absolute::bigint * interval '1 microsecond') \
         WHERE r.jti = :jti AND r.refresh_version = :version AND r.refresh_version < 2147483647 \
         AND r.expires_at > now() RETURNING r.refresh_version AS version, r.expires_at \\gset\n",
        jti = client_jti_sql(":uid::int"),
    )
}

/// Runs pgbench as `refresh_service` and summarises its logs.
pub async fn run(
    env: &Env,
    database: &str,
    variant: Variant,
    clients: usize,
    run: Duration,
    service_sql: &str,
) -> Result<RotationRow> {
    let script = match variant {
        Variant::PgbenchService => service_script(service_sql)?,
        Variant::PgbenchUpdate => update_script(),
        _ => bail!("not a pgbench variant"),
    };
    let dir = env.scratch.join(format!("{}-{clients}", variant.label()));
    // A fresh directory: an earlier round's logs must not be read again.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script_path = dir.join("script.sql");
    std::fs::write(&script_path, &script)?;
    let (host, port) = env.host_port()?;
    let config = Config::default();
    let micros = |d: Duration| d.as_micros().to_string();
    let seconds = run.as_secs_f64().ceil().max(1.0) as u64;
    let output = tokio::process::Command::new(env.bin_dir.join("pgbench"))
        .current_dir(&dir)
        .args(["-n", "-M", "prepared", "-l", "--log-prefix", "log"])
        .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
        .args(["-T", &seconds.to_string()])
        .args(["-D", "version=-1"])
        .args(["-D", &format!("idle={}", micros(config.idle))])
        .args(["-D", &format!("absolute={}", micros(config.absolute))])
        .args(["-D", &format!("grace={}", micros(config.grace))])
        .args([
            "-h",
            &host,
            "-p",
            &port.to_string(),
            "-U",
            "refresh_service",
        ])
        .arg("-f")
        .arg(&script_path)
        .arg(database)
        .env_remove("PGPASSWORD")
        .output()
        .await
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "pgbench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    ensure!(
        stdout.contains("number of failed transactions: 0 "),
        "pgbench reports failed transactions:\n{stdout}\n{stderr}"
    );
    let log = read_logs(&dir)?;
    let mut row = summarize_log(&log)?;
    row.variant = variant;
    row.clients = clients;
    Ok(row)
}

fn read_logs(dir: &Path) -> Result<String> {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("log.") {
            all.push_str(&std::fs::read_to_string(entry.path())?);
        }
    }
    ensure!(!all.is_empty(), "pgbench wrote no log in {}", dir.display());
    Ok(all)
}

/// Parses pgbench's per-transaction log (`client_id transaction_no time
/// script_no time_epoch time_us`), leaving out each client's first
/// transaction. Throughput is counted transactions over the span from the
/// earliest counted start to the latest end.
pub fn summarize_log(log: &str) -> Result<RotationRow> {
    struct Tx {
        client: u32,
        no: u64,
        latency_us: u64,
        end_us: u64,
    }
    let mut txs = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(f.len() >= 6, "unexpected pgbench log line {line:?}");
        let num = |i: usize| -> Result<u64> {
            f[i].parse()
                .with_context(|| format!("field {i} of pgbench log line {line:?}"))
        };
        txs.push(Tx {
            client: num(0)? as u32,
            no: num(1)?,
            latency_us: num(2)?,
            end_us: num(4)? * 1_000_000 + num(5)?,
        });
    }
    let mut first: HashMap<u32, u64> = HashMap::new();
    for t in &txs {
        let e = first.entry(t.client).or_insert(t.no);
        *e = (*e).min(t.no);
    }
    let total_rotations = txs.len() as u64;
    let counted: Vec<&Tx> = txs.iter().filter(|t| first[&t.client] != t.no).collect();
    ensure!(
        !counted.is_empty(),
        "pgbench ran no transaction after the first"
    );
    let start = counted
        .iter()
        .map(|t| t.end_us - t.latency_us)
        .min()
        .unwrap_or(0);
    let end = counted.iter().map(|t| t.end_us).max().unwrap_or(0);
    let seconds = (end - start) as f64 / 1e6;
    let mut lat: Vec<u64> = counted.iter().map(|t| t.latency_us).collect();
    Ok(RotationRow::from_latencies(
        Variant::PgbenchService,
        first.len(),
        &mut lat,
        seconds,
        total_rotations,
    ))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_service_statement_becomes_a_script_with_the_same_text() {
        let sql = "SELECT outcome, version, expires_at FROM auth.rotate_refresh_session(\
                   $1, $2, $3, $4::bigint * interval '1 microsecond', $5::bigint * interval '1 microsecond', \
                   $6::bigint * interval '1 microsecond')";
        let script = service_script(sql).unwrap();
        assert!(script.contains(
            "rotate_refresh_session(:jti, :uid, :version, :idle::bigint * interval '1 microsecond', \
             :absolute::bigint"
        ));
        assert!(service_script("SELECT $1").is_err());
    }

    #[test]
    fn logs_skip_each_clients_first_transaction() {
        let log = "0 0 5000 0 100 0\n0 1 100 0 100 100\n1 0 7000 0 100 0\n1 1 300 0 100 400\n";
        let row = summarize_log(log).unwrap();
        assert_eq!((row.rotations, row.total_rotations, row.clients), (2, 4, 2));
        assert_eq!((row.p50_us, row.p99_us), (100.0, 300.0));
        assert!((row.seconds - 0.0004).abs() < 1e-9);
    }
}
