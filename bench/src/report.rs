//! Tables (printed and in `summary.md`), JSON lines and the SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::rotation::{Variant, stmt};
use crate::{Env, Plan, pool};

/// One variant at one concurrency.
#[derive(Debug, Clone)]
pub struct RotationRow {
    /// Which implementation.
    pub variant: Variant,
    /// Clients = connections.
    pub clients: usize,
    /// Rotations counted (warm-up excluded).
    pub rotations: u64,
    /// Span they took.
    pub seconds: f64,
    /// `rotations / seconds`.
    pub per_sec: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// All successful rotations including warm-up (checked against the table).
    pub total_rotations: u64,
    /// Client CPU per rotation, µs (this process, or pgbench).
    pub client_cpu_us: f64,
    /// Server CPU per rotation, µs (postmaster and its backends).
    pub server_cpu_us: f64,
}

impl RotationRow {
    /// A row from per-call latencies measured over `seconds`; CPU figures are
    /// filled in later by the caller that sampled `/proc`.
    pub fn from_latencies(
        variant: Variant,
        clients: usize,
        latencies_us: &mut [u64],
        seconds: f64,
        total_rotations: u64,
    ) -> Self {
        let s = crate::stats::summarize(latencies_us);
        RotationRow {
            variant,
            clients,
            rotations: s.count as u64,
            seconds,
            per_sec: s.count as f64 / seconds,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            total_rotations,
            client_cpu_us: f64::NAN,
            server_cpu_us: f64::NAN,
        }
    }
}

/// Rotate and list at one table size.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    /// Live sessions in the table.
    pub sessions: i64,
    /// Calls measured per operation.
    pub samples: usize,
    /// Rotate median, µs.
    pub rotate_p50_us: f64,
    /// Rotate p99, µs.
    pub rotate_p99_us: f64,
    /// List median, µs.
    pub list_p50_us: f64,
    /// List p99, µs.
    pub list_p99_us: f64,
    /// Sessions a list returned on average.
    pub sessions_per_list: f64,
}

/// The purge of expired rows.
#[derive(Debug, Clone)]
pub struct PurgeRow {
    /// Expired rows deleted.
    pub rows: u64,
    /// Live rows in the table meanwhile.
    pub live_rows: u64,
    /// Rows per batch.
    pub batch_size: u32,
    /// Batches (statements, each its own transaction).
    pub batches: usize,
    /// Total seconds.
    pub total_s: f64,
    /// Longest batch, ms: the longest any lock was held.
    pub longest_batch_ms: f64,
    /// Median batch, ms.
    pub p50_batch_ms: f64,
}

/// Migration apply time.
#[derive(Debug, Clone)]
pub struct MigrationRow {
    /// Migrations applied.
    pub migrations: usize,
    /// Their up statements.
    pub statements: usize,
    /// Repetitions (median reported).
    pub reps: usize,
    /// `Migrator::up` from empty, including connecting, ms.
    pub migrator_ms: f64,
    /// `psql -f` of the same SQL, ms.
    pub psql_ms: f64,
    /// `psql -c 'SELECT 1'`, ms: psql's start-up and connection.
    pub psql_select1_ms: f64,
}

/// Everything one run measured.
pub struct Report {
    header: Value,
    /// Rotation rows: each variant's median round per concurrency.
    pub rotation: Vec<RotationRow>,
    /// Every round, in run order.
    pub rotation_runs: Vec<RotationRow>,
    /// The rotate statement the service sent (as seen by the server).
    pub service_sql: Option<String>,
    /// Scale rows, small then large.
    pub scale: Vec<ScaleRow>,
    /// The purge.
    pub purge: Option<PurgeRow>,
    /// Migration timings.
    pub migration: Option<MigrationRow>,
}

fn ms(us: f64) -> f64 {
    (us / 10.0).round() / 100.0
}

impl Report {
    /// Records what ran where.
    pub async fn new(env: &Env, quick: bool, plan: &Plan) -> Result<Self> {
        let db = pool(&env.owner_url("postgres"), 1).await?;
        let row = db
            .query_one_raw(stmt(
                "SELECT version() AS v, current_setting('fsync') AS f, \
                 current_setting('synchronous_commit') AS s, current_setting('shared_buffers') AS b",
                vec![],
            ))
            .await?
            .context("a row")?;
        let header = json!({
            "kind": "run",
            "at": chrono::Utc::now().to_rfc3339(),
            "quick": quick,
            "server": row.try_get::<String>("", "v")?,
            "fsync": row.try_get::<String>("", "f")?,
            "synchronous_commit": row.try_get::<String>("", "s")?,
            "shared_buffers": row.try_get::<String>("", "b")?,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "seconds_per_run": plan.run.as_secs_f64(),
            "rounds": plan.reps,
            "background_sessions": plan.background_sessions,
        });
        db.close().await?;
        Ok(Self {
            header,
            rotation: Vec::new(),
            rotation_runs: Vec::new(),
            service_sql: None,
            scale: Vec::new(),
            purge: None,
            migration: None,
        })
    }

    fn find(&self, variant: Variant, clients: usize) -> Option<&RotationRow> {
        self.rotation
            .iter()
            .find(|r| r.variant == variant && r.clients == clients)
    }

    fn concurrencies(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self.rotation.iter().map(|r| r.clients).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    fn ratio(&self, clients: usize, other: Variant) -> Option<f64> {
        Some(self.find(Variant::Service, clients)?.per_sec / self.find(other, clients)?.per_sec)
    }

    fn p99_ratio(&self, clients: usize) -> Option<f64> {
        Some(
            self.find(Variant::Service, clients)?.p99_us
                / self.find(Variant::PgbenchUpdate, clients)?.p99_us,
        )
    }

    fn rotation_md(&self) -> String {
        let mut s = String::from(
            "| clients | variant | rotations/s | p50 ms | p99 ms | CPU µs/rotation: client | server |\n\
             |---:|---|---:|---:|---:|---:|---:|\n",
        );
        for c in self.concurrencies() {
            for v in Variant::ALL {
                if let Some(r) = self.find(v, c) {
                    let _ = writeln!(
                        s,
                        "| {c} | ({}) {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
                        v.label(),
                        v.description(),
                        r.per_sec,
                        r.p50_us / 1e3,
                        r.p99_us / 1e3,
                        r.client_cpu_us,
                        r.server_cpu_us
                    );
                }
            }
        }
        s.push_str(
            "\n| clients | a/b | a/b1 | a/c | p99 a / p99 b1 |\n|---:|---:|---:|---:|---:|\n",
        );
        for c in self.concurrencies() {
            let f = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.2}"));
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {} | {} |",
                f(self.ratio(c, Variant::PgbenchService)),
                f(self.ratio(c, Variant::PgbenchUpdate)),
                f(self.ratio(c, Variant::Naive)),
                f(self.p99_ratio(c)),
            );
        }
        s
    }

    fn scale_md(&self) -> String {
        let mut s = String::from(
            "| live sessions | rotate p50 ms | rotate p99 ms | list p50 ms | list p99 ms | sessions per list |\n\
             |---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.scale {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
                r.sessions,
                r.rotate_p50_us / 1e3,
                r.rotate_p99_us / 1e3,
                r.list_p50_us / 1e3,
                r.list_p99_us / 1e3,
                r.sessions_per_list
            );
        }
        if let Some(p) = &self.purge {
            let _ = write!(
                s,
                "\npurge_expired: {} expired rows (among {} live) in {} batches of {}: \
                 total {:.2} s, longest batch {:.1} ms, median batch {:.1} ms\n",
                p.rows,
                p.live_rows,
                p.batches,
                p.batch_size,
                p.total_s,
                p.longest_batch_ms,
                p.p50_batch_ms
            );
        }
        s
    }

    fn migration_md(&self) -> String {
        match &self.migration {
            Some(m) => format!(
                "| apply all {} migrations ({} statements) to an empty database, median of {} | ms |\n|---|---:|\n\
                 | `Migrator::up` (connect + apply + record checksums) | {:.1} |\n\
                 | `psql -f` of the same up SQL (one transaction per migration) | {:.1} |\n\
                 | `psql -c 'SELECT 1'` (psql start-up + connect) | {:.1} |\n",
                m.migrations, m.statements, m.reps, m.migrator_ms, m.psql_ms, m.psql_select1_ms
            ),
            None => String::new(),
        }
    }

    /// (goal, measured, met) for each of the issue's goals that was measured.
    fn goals(&self) -> Vec<(String, String, bool)> {
        let mut g = Vec::new();
        if let Some(x) = self.ratio(8, Variant::PgbenchService) {
            g.push(("a/b ≥ 0.9 at 8 clients".into(), format!("{x:.2}"), x >= 0.9));
        }
        if let Some(x) = self.ratio(8, Variant::PgbenchUpdate) {
            g.push((
                "a/b1 ≥ 0.8 at 8 clients".into(),
                format!("{x:.2}"),
                x >= 0.8,
            ));
        }
        if let Some(x) = self.p99_ratio(8) {
            g.push((
                "p99 a ≤ 2 × p99 b1 at 8 clients".into(),
                format!("{x:.2}×"),
                x <= 2.0,
            ));
        }
        if let Some(x) = self.ratio(32, Variant::Naive) {
            g.push(("a/c ≥ 2 at 32 clients".into(), format!("{x:.2}"), x >= 2.0));
        }
        if let [small, large] = self.scale.as_slice() {
            let x = large.rotate_p50_us / small.rotate_p50_us;
            g.push((
                format!(
                    "rotate p50 at {} ≤ 1.3 × at {}",
                    large.sessions, small.sessions
                ),
                format!("{x:.2}×"),
                x <= 1.3,
            ));
        }
        if let Some(p) = &self.purge {
            g.push((
                "longest purge batch ≤ 100 ms".into(),
                format!("{:.1} ms", p.longest_batch_ms),
                p.longest_batch_ms <= 100.0,
            ));
        }
        g
    }

    fn goals_md(&self) -> String {
        let mut s = String::from("| goal | measured | met |\n|---|---:|:---:|\n");
        for (goal, measured, met) in self.goals() {
            let _ = writeln!(
                s,
                "| {goal} | {measured} | {} |",
                if met { "yes" } else { "no" }
            );
        }
        s
    }

    /// Prints the rotation table and ratios.
    pub fn print_rotation(&self) {
        println!("\n{}", self.rotation_md());
    }

    /// Prints the scale and purge figures.
    pub fn print_scale(&self) {
        println!("\n{}", self.scale_md());
    }

    /// Prints the migration timings and the goals.
    pub fn print_migration(&self) {
        println!("\n{}", self.migration_md());
    }

    /// Writes `results.jsonl`, `rotation.svg` and `summary.md` into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        println!("\n{}", self.goals_md());
        let mut lines = vec![self.header.clone()];
        if let Some(sql) = &self.service_sql {
            lines.push(json!({"kind": "service_sql", "sql": sql}));
        }
        for r in &self.rotation {
            lines.push(json!({
                "kind": "rotation", "variant": r.variant.label(), "description": r.variant.description(),
                "clients": r.clients, "rotations": r.rotations, "seconds": r.seconds,
                "rotations_per_s": r.per_sec.round(), "p50_ms": ms(r.p50_us), "p99_ms": ms(r.p99_us),
                "client_cpu_us_per_rotation": r.client_cpu_us.round(),
                "server_cpu_us_per_rotation": r.server_cpu_us.round(),
            }));
        }
        for r in &self.rotation_runs {
            lines.push(json!({
                "kind": "rotation_round", "variant": r.variant.label(), "clients": r.clients,
                "rotations_per_s": r.per_sec.round(), "p50_ms": ms(r.p50_us), "p99_ms": ms(r.p99_us),
                "client_cpu_us_per_rotation": r.client_cpu_us.round(),
                "server_cpu_us_per_rotation": r.server_cpu_us.round(),
            }));
        }
        for c in self.concurrencies() {
            lines.push(json!({
                "kind": "ratio", "clients": c,
                "a_over_b": self.ratio(c, Variant::PgbenchService),
                "a_over_b1": self.ratio(c, Variant::PgbenchUpdate),
                "a_over_c": self.ratio(c, Variant::Naive),
                "p99_a_over_b1": self.p99_ratio(c),
            }));
        }
        for r in &self.scale {
            lines.push(json!({
                "kind": "scale", "sessions": r.sessions, "samples": r.samples,
                "rotate_p50_ms": r.rotate_p50_us / 1e3, "rotate_p99_ms": r.rotate_p99_us / 1e3,
                "list_p50_ms": r.list_p50_us / 1e3, "list_p99_ms": r.list_p99_us / 1e3,
                "sessions_per_list": r.sessions_per_list,
            }));
        }
        if let Some(p) = &self.purge {
            lines.push(json!({
                "kind": "purge", "rows": p.rows, "live_rows": p.live_rows, "batch_size": p.batch_size,
                "batches": p.batches, "total_s": p.total_s, "longest_batch_ms": p.longest_batch_ms,
                "p50_batch_ms": p.p50_batch_ms,
            }));
        }
        if let Some(m) = &self.migration {
            lines.push(json!({
                "kind": "migration", "migrations": m.migrations, "statements": m.statements, "reps": m.reps,
                "migrator_ms": m.migrator_ms, "psql_ms": m.psql_ms, "psql_select1_ms": m.psql_select1_ms,
            }));
        }
        for (goal, measured, met) in self.goals() {
            lines.push(json!({"kind": "goal", "goal": goal, "measured": measured, "met": met}));
        }
        let mut jsonl = String::new();
        for l in lines {
            jsonl.push_str(&serde_json::to_string(&l)?);
            jsonl.push('\n');
        }
        std::fs::write(out.join("results.jsonl"), jsonl)?;
        std::fs::write(out.join("rotation.svg"), self.svg())?;
        let summary = format!(
            "Run: {}\n\n### Rotation\n\n{}\n### Goals\n\n{}\n### Scale and purge\n\n{}\n### Migrations\n\n{}",
            self.header,
            self.rotation_md(),
            self.goals_md(),
            self.scale_md(),
            self.migration_md()
        );
        std::fs::write(out.join("summary.md"), summary)?;
        Ok(())
    }

    /// Two panels: rotations/s and p99 latency, grouped by concurrency.
    fn svg(&self) -> String {
        const W: f64 = 960.0;
        const H: f64 = 440.0;
        const COLORS: [&str; 5] = ["#1f77b4", "#aec7e8", "#2ca02c", "#98df8a", "#d62728"];
        let cs = self.concurrencies();
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Refresh-token rotation, one embedded PostgreSQL 18, each client its own session</text>
"#,
            W / 2.0
        );
        let panels: [(&str, f64, Metric); 2] = [
            (
                "rotations per second (higher is better)",
                20.0,
                Box::new(|r| r.per_sec),
            ),
            (
                "p99 latency, ms (lower is better)",
                W / 2.0 + 10.0,
                Box::new(|r| r.p99_us / 1e3),
            ),
        ];
        for (title, x0, value) in panels {
            let (pw, top, bottom, left) = (W / 2.0 - 40.0, 60.0, H - 110.0, x0 + 50.0);
            let plot_w = pw - 50.0;
            let max = self.rotation.iter().map(&value).fold(0.0, f64::max);
            let (step, ticks) = nice_ticks(max);
            let ymax = step * ticks as f64;
            let y = |v: f64| bottom - (bottom - top) * v / ymax;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="48" text-anchor="middle" font-size="13">{title}</text>"#,
                left + plot_w / 2.0
            );
            for t in 0..=ticks {
                let v = step * t as f64;
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    left + plot_w,
                    left - 6.0,
                    y(v) + 4.0,
                    fmt_tick(v),
                    y = y(v)
                );
            }
            let group_w = plot_w / cs.len().max(1) as f64;
            let bar_w = group_w * 0.8 / Variant::ALL.len() as f64;
            for (gi, &c) in cs.iter().enumerate() {
                let gx = left + gi as f64 * group_w + group_w * 0.1;
                for (vi, v) in Variant::ALL.iter().enumerate() {
                    if let Some(r) = self.find(*v, c) {
                        let val = value(r);
                        let x = gx + vi as f64 * bar_w;
                        let _ = writeln!(
                            s,
                            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>({}) {} clients: {}</title></rect>"#,
                            y(val),
                            bar_w - 2.0,
                            bottom - y(val),
                            COLORS[vi],
                            v.label(),
                            c,
                            fmt_tick(val)
                        );
                        let _ = writeln!(
                            s,
                            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                            x + bar_w / 2.0 - 1.0,
                            y(val) - 3.0,
                            fmt_tick(val)
                        );
                    }
                }
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{c} client{}</text>"#,
                    gx + group_w * 0.4,
                    bottom + 18.0,
                    if c == 1 { "" } else { "s" }
                );
            }
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#333"/><line x1="{left}" x2="{}" y1="{bottom}" y2="{bottom}" stroke="#333"/>"##,
                left + plot_w
            );
        }
        for (vi, v) in Variant::ALL.iter().enumerate() {
            let (x, yy) = (
                60.0 + (vi % 2) as f64 * 440.0,
                H - 45.0 + (vi / 2) as f64 * 20.0,
            );
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{yy}">({}) {}</text>"#,
                yy - 10.0,
                COLORS[vi],
                x + 18.0,
                v.label(),
                xml_escape(v.description())
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Which number of a row a chart panel shows.
type Metric = Box<dyn Fn(&RotationRow) -> f64>;

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A 1/2/5 step and the number of steps covering `max`.
fn nice_ticks(max: f64) -> (f64, usize) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 1);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil() as usize)
}
