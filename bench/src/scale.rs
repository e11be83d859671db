//! The same table at two sizes: rotate and list latency (one client, as
//! `refresh_service`), then `purge_expired` of many expired rows in
//! batches (as `refresh_maintenance`), timing every batch.

use std::num::NonZeroU32;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use service::{Claims, Config, Maintenance, RefreshService};
use uuid::Uuid;

use crate::report::{PurgeRow, Report, ScaleRow};
use crate::rotation::{keys, stmt};
use crate::stats::summarize;
use crate::{Env, Plan, pool, settle};

const DATABASE: &str = "bench_scale";
/// Sessions per user on average, at every size.
const SESSIONS_PER_USER: i64 = 5;
const WARMUP: usize = 50;

/// The statement `Maintenance::purge_expired` sends per batch. The bench
/// times each batch itself, so it sends the statement in the same loop;
/// [`run`] checks afterwards, in `pg_stat_activity`, that the service sent
/// this very text.
const PURGE_BATCH: &str = "DELETE FROM auth.refresh_session WHERE id = ANY (ARRAY(\
     SELECT id FROM auth.refresh_session WHERE expires_at < now() \
     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))";

/// Seeds, measures at both sizes, purges; adds rows to `report`.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    env.server
        .create_database(DATABASE, Some("template0"))
        .await?;
    let owner = pool(&env.owner_url(DATABASE), 1).await?;
    Migrator::up(&owner, None).await.context("migrating")?;
    let users = plan.scale_large / SESSIONS_PER_USER;
    let t = Instant::now();
    owner
        .execute_unprepared(&format!(
            r#"INSERT INTO auth."user" (email)
               SELECT 'user' || g || '@example.com' FROM generate_series(1, {users}) g"#
        ))
        .await?;
    eprintln!("bench: scale: {users} users in {:?}", t.elapsed());

    let svc = RefreshService::new(
        pool(&env.role_url(DATABASE, "refresh_service")?, 1).await?,
        keys(),
        Config::default(),
    )
    .await?;

    let mut have = 0;
    for size in [plan.scale_small, plan.scale_large] {
        let t = Instant::now();
        // Spread over size / 5 users, so a user has about 5 sessions at
        // either size.
        insert_sessions(&owner, have, size - have, size / SESSIONS_PER_USER, false).await?;
        have = size;
        settle(&owner, "auth.refresh_session").await?;
        eprintln!("bench: scale: {size} sessions seeded in {:?}", t.elapsed());
        report
            .scale
            .push(measure(&owner, &svc, size, plan.scale_samples).await?);
    }

    // Expired rows among the live ones, then purge them.
    let t = Instant::now();
    insert_sessions(&owner, have, plan.purge_rows, users, true).await?;
    owner
        .execute_unprepared("ANALYZE auth.refresh_session")
        .await?;
    owner.execute_unprepared("CHECKPOINT").await?;
    eprintln!(
        "bench: purge: {} expired sessions seeded in {:?}",
        plan.purge_rows,
        t.elapsed()
    );
    let maintenance_db = pool(&env.role_url(DATABASE, "refresh_maintenance")?, 1).await?;
    let maintenance = Maintenance::new(maintenance_db.clone()).await?;
    let batch = i64::from(plan.purge_batch);
    let mut batches_us = Vec::new();
    let mut deleted = 0;
    let t = Instant::now();
    loop {
        let b = Instant::now();
        let done = maintenance_db
            .execute_raw(stmt(PURGE_BATCH, vec![batch.into()]))
            .await?
            .rows_affected();
        batches_us.push(b.elapsed().as_micros() as u64);
        deleted += done;
        if done < batch as u64 {
            break;
        }
    }
    let total = t.elapsed();
    ensure!(
        deleted == plan.purge_rows as u64,
        "purged {deleted}, expected {}",
        plan.purge_rows
    );
    // The service's own call finds nothing left, and must have sent the
    // statement timed above.
    let after = maintenance
        .purge_expired(NonZeroU32::new(plan.purge_batch).expect("batch >= 1"))
        .await?;
    ensure!(after == 0, "purge_expired found {after} more rows");
    let sent = last_statement_of(&owner, "refresh_maintenance").await?;
    ensure!(
        sent == PURGE_BATCH,
        "Maintenance::purge_expired now sends {sent:?}; update PURGE_BATCH"
    );
    let longest = batches_us.iter().copied().max().unwrap_or(0);
    let mut sorted = batches_us.clone();
    let s = summarize(&mut sorted);
    report.purge = Some(PurgeRow {
        rows: deleted,
        live_rows: have as u64,
        batch_size: plan.purge_batch,
        batches: batches_us.len(),
        total_s: total.as_secs_f64(),
        longest_batch_ms: longest as f64 / 1000.0,
        p50_batch_ms: s.p50_us / 1000.0,
    });
    eprintln!(
        "bench: purge: {deleted} rows in {} batches, {:.2} s, longest batch {:.1} ms",
        batches_us.len(),
        total.as_secs_f64(),
        longest as f64 / 1000.0
    );
    Ok(())
}

/// Inserts `count` sessions numbered after `from`, over users `1..=users`;
/// expired ones with `expires_at` spread over the past days.
async fn insert_sessions(
    owner: &DatabaseConnection,
    from: i64,
    count: i64,
    users: i64,
    expired: bool,
) -> Result<()> {
    let (created, expires) = if expired {
        (
            "now() - interval '100 days'",
            "now() - interval '1 hour' - random() * interval '10 days'",
        )
    } else {
        (
            "now() - random() * interval '30 days'",
            "now() + interval '1 hour' + random() * interval '14 days'",
        )
    };
    owner
        .execute_unprepared(&format!(
            "INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at, user_agent, ip_address) \
             SELECT 1 + g % {users}, {created}, {created}, {expires}, 'Mozilla/5.0 (bench)', \
                    ('198.51.100.' || (g % 250))::inet \
             FROM generate_series({}, {}) g",
            from + 1,
            from + count
        ))
        .await?;
    Ok(())
}

async fn measure(
    owner: &DatabaseConnection,
    svc: &RefreshService,
    size: i64,
    samples: usize,
) -> Result<ScaleRow> {
    let rows = owner
        .query_all_raw(stmt(
            "SELECT jti, user_id, refresh_version FROM auth.refresh_session \
             WHERE expires_at > now() ORDER BY random() LIMIT $1",
            vec![((samples + WARMUP) as i64).into()],
        ))
        .await?;
    let keys = keys();
    let mut tokens = Vec::new();
    let mut users = Vec::new();
    for row in &rows {
        let user_id: i32 = row.try_get("", "user_id")?;
        users.push(user_id);
        tokens.push(
            keys.sign(&Claims {
                user_id,
                jti: row.try_get::<Uuid>("", "jti")?,
                refresh_version: row.try_get("", "refresh_version")?,
                expires_at: Utc::now() + chrono::Duration::days(14),
            })
            .into_secret(),
        );
    }
    let mut rotate_us = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let t = Instant::now();
        svc.rotate(token).await?;
        if i >= WARMUP {
            rotate_us.push(t.elapsed().as_micros() as u64);
        }
    }
    let mut list_us = Vec::new();
    let mut listed = 0;
    for (i, &user) in users.iter().enumerate() {
        let t = Instant::now();
        listed += svc.list(user).await?.len();
        if i >= WARMUP {
            list_us.push(t.elapsed().as_micros() as u64);
        }
    }
    let r = summarize(&mut rotate_us);
    let l = summarize(&mut list_us);
    eprintln!(
        "bench: scale {size}: rotate p50 {:.0} µs p99 {:.0} µs; list p50 {:.0} µs p99 {:.0} µs",
        r.p50_us, r.p99_us, l.p50_us, l.p99_us
    );
    Ok(ScaleRow {
        sessions: size,
        samples: r.count,
        rotate_p50_us: r.p50_us,
        rotate_p99_us: r.p99_us,
        list_p50_us: l.p50_us,
        list_p99_us: l.p99_us,
        sessions_per_list: listed as f64 / users.len() as f64,
    })
}

/// The last statement an idle connection of `role` ran.
async fn last_statement_of(owner: &DatabaseConnection, role: &str) -> Result<String> {
    let row = owner
        .query_one_raw(stmt(
            "SELECT query FROM pg_stat_activity WHERE usename = $1 AND datname = $2 \
             AND state = 'idle' ORDER BY state_change DESC LIMIT 1",
            vec![role.into(), DATABASE.into()],
        ))
        .await?
        .with_context(|| format!("no idle {role} connection"))?;
    Ok(row.try_get("", "query")?)
}
