//! Rotation throughput and latency: (a) the service, (b) pgbench with the
//! service's statement, (b1) pgbench with the single UPDATE, (c) a naive
//! read-then-write rotate, at each concurrency, back to back.
//!
//! Client `c` (1-based) owns user `c` and the session whose `jti` is
//! [`client_jti`]`(c)`; every variant starts from version 0 on the same rows
//! (reset, vacuumed and checkpointed between runs), among
//! `background_sessions` other sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::Utc;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use service::{Claims, Config, Key, Keyring, RefreshService};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::report::{Report, RotationRow};
use crate::{Env, Plan, cpu, default_pool, pgbench, pool, settle};

/// The rotation benchmark's database.
pub const DATABASE: &str = "bench_rotation";
/// Users seeded (background sessions are spread over them).
const USERS: i64 = 2_000;

/// Which implementation one run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `RefreshService::rotate`, pool pinging only idle connections.
    Service,
    /// `RefreshService::rotate`, sea-orm's default pool (ping per checkout).
    ServiceDefaultPool,
    /// pgbench, the service's statement.
    PgbenchService,
    /// pgbench, the single UPDATE.
    PgbenchUpdate,
    /// BEGIN; SELECT … FOR UPDATE; UPDATE …; COMMIT from Rust.
    Naive,
}

impl Variant {
    /// All, in the order they run at each concurrency.
    pub const ALL: [Variant; 5] = [
        Variant::Service,
        Variant::ServiceDefaultPool,
        Variant::PgbenchService,
        Variant::PgbenchUpdate,
        Variant::Naive,
    ];

    /// Short label used in tables, JSON and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Service => "a",
            Variant::ServiceDefaultPool => "a0",
            Variant::PgbenchService => "b",
            Variant::PgbenchUpdate => "b1",
            Variant::Naive => "c",
        }
    }

    /// What it is.
    pub fn description(self) -> &'static str {
        match self {
            Variant::Service => "service rotate (Rust; pool pings only idle connections)",
            Variant::ServiceDefaultPool => {
                "service rotate, sea-orm's default pool (pings on every checkout)"
            }
            Variant::PgbenchService => "pgbench: the service's statement",
            Variant::PgbenchUpdate => "pgbench: single UPDATE … RETURNING",
            Variant::Naive => "naive: BEGIN; SELECT … FOR UPDATE; UPDATE; COMMIT",
        }
    }
}

/// The `jti` of client `c`'s session: recognisable, and computable in SQL
/// from `c` alone (the pgbench scripts do that).
pub fn client_jti(c: i32) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-7000-8000-{c:012x}")).expect("valid uuid")
}

/// SQL spelling of [`client_jti`] for an integer expression.
pub fn client_jti_sql(expr: &str) -> String {
    format!("('00000000-0000-7000-8000-' || lpad(to_hex({expr}), 12, '0'))")
}

/// The bench's signing key (not a secret: the bench mints its own tokens).
pub fn keys() -> Keyring {
    Keyring::new(Key::new("bench", vec![0x42; 32]).expect("valid key"))
}

pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs every variant at every concurrency and adds the rows to `report`.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    let max_clients = *plan.clients.iter().max().expect("some concurrency") as i64;
    let owner = seed(env, plan, max_clients).await?;
    let mut service_sql: Option<String> = None;
    for &clients in plan.clients {
        let mut runs: Vec<RotationRow> = Vec::new();
        for (rep, variant) in (0..plan.reps).flat_map(|r| Variant::ALL.map(|v| (r, v))) {
            reset(&owner, max_clients).await?;
            eprintln!(
                "bench: rotation {} ({}) with {clients} client(s) for {:?}, round {}/{}",
                variant.label(),
                variant.description(),
                plan.run,
                rep + 1,
                plan.reps
            );
            let before = cpu::snapshot(env.server.pid());
            let mut row = match variant {
                Variant::Service | Variant::ServiceDefaultPool | Variant::Naive => {
                    let (row, sql) = rust_run(env, &owner, variant, clients, plan.run).await?;
                    if service_sql.is_none() {
                        service_sql = sql;
                    }
                    row
                }
                Variant::PgbenchService => {
                    let sql = service_sql
                        .as_deref()
                        .context("(a) runs before (b) and leaves its statement behind")?;
                    pgbench::run(env, DATABASE, variant, clients, plan.run, sql).await?
                }
                Variant::PgbenchUpdate => {
                    pgbench::run(env, DATABASE, variant, clients, plan.run, "").await?
                }
            };
            // Let the postmaster reap the run's backends, so their CPU time
            // shows in its counters.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = cpu::snapshot(env.server.pid());
            let client = match variant {
                Variant::Service | Variant::ServiceDefaultPool | Variant::Naive => {
                    after.own - before.own
                }
                _ => after.children - before.children,
            };
            let per_rotation = 1e6 / row.total_rotations.max(1) as f64;
            row.client_cpu_us = client * per_rotation;
            row.server_cpu_us = (after.server - before.server) * per_rotation;
            let rotated = rotations_in_db(&owner, max_clients).await?;
            ensure!(
                rotated == row.total_rotations,
                "{}: the table holds {rotated} rotations, the client counted {}",
                variant.label(),
                row.total_rotations
            );
            eprintln!(
                "bench:   {:.0}/s, p50 {:.0} µs, p99 {:.0} µs, CPU per rotation: client {:.0} µs, \
                 server {:.0} µs ({} rotations verified in the table)",
                row.per_sec, row.p50_us, row.p99_us, row.client_cpu_us, row.server_cpu_us, rotated
            );
            runs.push(row);
        }
        // Per variant, the round with the median throughput (whole row, so
        // its latencies and CPU belong to the same run).
        for variant in Variant::ALL {
            let mut mine: Vec<&RotationRow> =
                runs.iter().filter(|r| r.variant == variant).collect();
            mine.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
            report.rotation.push(mine[mine.len() / 2].clone());
        }
        report.rotation_runs.extend(runs);
    }
    report.service_sql = service_sql;
    Ok(())
}

/// Creates and migrates the database, seeds users and sessions, returns an
/// owner connection (used only for seeding, resets and checks).
async fn seed(env: &Env, plan: &Plan, clients: i64) -> Result<DatabaseConnection> {
    env.server
        .create_database(DATABASE, Some("template0"))
        .await?;
    let owner = pool(&env.owner_url(DATABASE), 1).await?;
    Migrator::up(&owner, None).await.context("migrating")?;
    owner
        .execute_unprepared(&format!(
            r#"INSERT INTO auth."user" (email)
               SELECT 'bench' || g || '@example.com' FROM generate_series(1, {USERS}) g"#
        ))
        .await?;
    let row = owner
        .query_one_raw(stmt(
            r#"SELECT count(*) FILTER (WHERE id = substring(email from 6 for position('@' in email) - 6)::int) AS ok
               FROM auth."user""#,
            vec![],
        ))
        .await?
        .context("a row")?;
    let ok: i64 = row.try_get("", "ok")?;
    ensure!(ok == USERS, "user ids must be 1..{USERS} in email order");
    owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.refresh_session (jti, user_id, expires_at) \
             SELECT {}::uuid, c, now() + interval '14 days' FROM generate_series(1, {clients}) c",
            client_jti_sql("c")
        ))
        .await?;
    owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at, user_agent, ip_address) \
             SELECT 1 + g % {USERS}, now() - random() * interval '30 days', now() - random() * interval '1 day', \
                    now() + random() * interval '14 days', 'Mozilla/5.0 (bench)', ('203.0.113.' || (g % 250))::inet \
             FROM generate_series(1, {}) g",
            plan.background_sessions
        ))
        .await?;
    Ok(owner)
}

/// Puts every client's session back to version 0, then vacuums and
/// checkpoints so each run starts alike.
async fn reset(owner: &DatabaseConnection, clients: i64) -> Result<()> {
    owner
        .execute_unprepared(&format!(
            "UPDATE auth.refresh_session SET refresh_version = 0, last_used_at = now(), \
             expires_at = now() + interval '14 days' \
             WHERE jti IN (SELECT {}::uuid FROM generate_series(1, {clients}) c)",
            client_jti_sql("c")
        ))
        .await?;
    settle(owner, "auth.refresh_session").await
}

/// Sum of the clients' versions: every successful rotation added one.
async fn rotations_in_db(owner: &DatabaseConnection, clients: i64) -> Result<u64> {
    let row = owner
        .query_one_raw(stmt(
            &format!(
                "SELECT coalesce(sum(refresh_version), 0)::bigint AS n FROM auth.refresh_session \
                 WHERE jti IN (SELECT {}::uuid FROM generate_series(1, {clients}) c)",
                client_jti_sql("c")
            ),
            vec![],
        ))
        .await?
        .context("a row")?;
    Ok(row.try_get::<i64>("", "n")? as u64)
}

/// The rotate statement as the server received it from the service (the
/// last statement of an idle `refresh_service` connection), so (b) sends
/// exactly that text rather than a copy that could drift.
async fn observed_rotate_sql(owner: &DatabaseConnection) -> Result<String> {
    let rows = owner
        .query_all_raw(stmt(
            "SELECT DISTINCT query FROM pg_stat_activity \
             WHERE usename = 'refresh_service' AND datname = $1 \
               AND query LIKE '%rotate_refresh_session%'",
            vec![DATABASE.into()],
        ))
        .await?;
    let mut texts: Vec<String> = rows
        .iter()
        .map(|r| r.try_get("", "query"))
        .collect::<Result<_, _>>()?;
    match texts.len() {
        1 => Ok(texts.remove(0)),
        0 => bail!("no refresh_service connection shows the rotate statement"),
        _ => bail!("the service sent several rotate statements: {texts:?}"),
    }
}

/// Opens all `n` connections of the pool (each held at once), so no run
/// pays for connecting.
async fn open_all(db: &DatabaseConnection, n: usize) -> Result<()> {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let db = db.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let txn = db.begin().await?;
            txn.execute_unprepared("SELECT 1").await?;
            barrier.wait().await;
            txn.commit().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// What one client task measured.
struct ClientRun {
    latencies_us: Vec<u64>,
    first_start: Instant,
    last_end: Instant,
    warmup: u64,
}

const WARMUP_CALLS: u64 = 5;

/// Runs (a) or (c); for (a) also returns the rotate statement the server
/// saw, read before the pool closes.
async fn rust_run(
    env: &Env,
    owner: &DatabaseConnection,
    variant: Variant,
    clients: usize,
    run: Duration,
) -> Result<(RotationRow, Option<String>)> {
    let url = env.role_url(DATABASE, "refresh_service")?;
    let db = match variant {
        Variant::ServiceDefaultPool => default_pool(&url, clients as u32).await?,
        _ => pool(&url, clients as u32).await?,
    };
    open_all(&db, clients).await?;
    let config = Config::default();
    let svc = Arc::new(RefreshService::new(db.clone(), keys(), config).await?);
    let barrier = Arc::new(Barrier::new(clients));
    let mut tasks = Vec::new();
    for c in 1..=clients as i32 {
        let (svc, db, barrier) = (Arc::clone(&svc), db.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let keys = keys();
            let mut token = keys
                .sign(&Claims {
                    user_id: c,
                    jti: client_jti(c),
                    refresh_version: 0,
                    expires_at: Utc::now() + chrono::Duration::days(14),
                })
                .into_secret();
            let one = async |token: &str| -> Result<String> {
                match variant {
                    Variant::Service | Variant::ServiceDefaultPool => {
                        Ok(svc.rotate(token).await?.token.into_secret())
                    }
                    Variant::Naive => naive_rotate(&db, &keys, &config, token).await,
                    _ => unreachable!("pgbench variants do not run here"),
                }
            };
            for _ in 0..WARMUP_CALLS {
                token = one(&token).await?;
            }
            barrier.wait().await;
            let first_start = Instant::now();
            let deadline = first_start + run;
            let mut latencies_us = Vec::with_capacity(65_536);
            let mut last_end = first_start;
            while last_end < deadline {
                let t = Instant::now();
                token = one(&token).await?;
                last_end = Instant::now();
                latencies_us.push((last_end - t).as_micros() as u64);
            }
            anyhow::Ok(ClientRun {
                latencies_us,
                first_start,
                last_end,
                warmup: WARMUP_CALLS,
            })
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await??);
    }
    let sql = match variant {
        Variant::Service => Some(observed_rotate_sql(owner).await?),
        _ => None,
    };
    db.close().await?;
    let start = runs.iter().map(|r| r.first_start).min().expect("clients");
    let end = runs.iter().map(|r| r.last_end).max().expect("clients");
    let total_rotations: u64 = runs
        .iter()
        .map(|r| r.latencies_us.len() as u64 + r.warmup)
        .sum();
    let mut all: Vec<u64> = runs.into_iter().flat_map(|r| r.latencies_us).collect();
    let seconds = (end - start).as_secs_f64();
    let row = RotationRow::from_latencies(variant, clients, &mut all, seconds, total_rotations);
    Ok((row, sql))
}

const NAIVE_SELECT: &str = "SELECT refresh_version, expires_at FROM auth.refresh_session \
     WHERE jti = $1 FOR UPDATE";
const NAIVE_UPDATE: &str = "UPDATE auth.refresh_session SET refresh_version = $2, last_used_at = now(), \
     expires_at = least(now() + $3::bigint * interval '1 microsecond', created_at + $4::bigint * interval '1 microsecond') \
     WHERE jti = $1 RETURNING refresh_version, expires_at";

/// What most apps write: verify the token, lock the row, compare in the
/// app, write, commit; then sign the next token. Under the same RLS as the
/// service, so the acting user is set first (as the service's own `list`,
/// `revoke` and `revoke_all` do): BEGIN, set_config, SELECT … FOR UPDATE,
/// UPDATE, COMMIT.
async fn naive_rotate(
    db: &DatabaseConnection,
    keys: &Keyring,
    config: &Config,
    token: &str,
) -> Result<String> {
    let claims = keys.verify(token)?;
    let txn = db.begin().await?;
    txn.execute_raw(stmt(
        "SELECT set_config('auth.user_id', $1, true)",
        vec![claims.user_id.to_string().into()],
    ))
    .await?;
    let row = txn
        .query_one_raw(stmt(NAIVE_SELECT, vec![claims.jti.into()]))
        .await?
        .context("no session")?;
    let version: i32 = row.try_get("", "refresh_version")?;
    let expires_at: chrono::DateTime<Utc> = row.try_get("", "expires_at")?;
    ensure!(version == claims.refresh_version, "stale version");
    ensure!(expires_at > Utc::now(), "expired");
    let row = txn
        .query_one_raw(stmt(
            NAIVE_UPDATE,
            vec![
                claims.jti.into(),
                (version + 1).into(),
                micros(config.idle).into(),
                micros(config.absolute).into(),
            ],
        ))
        .await?
        .context("no row updated")?;
    txn.commit().await?;
    Ok(keys
        .sign(&Claims {
            user_id: claims.user_id,
            jti: claims.jti,
            refresh_version: row.try_get("", "refresh_version")?,
            expires_at: row.try_get("", "expires_at")?,
        })
        .into_secret())
}
