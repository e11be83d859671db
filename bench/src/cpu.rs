//! CPU time from `/proc/<pid>/stat`, to tell where a rotation's time goes:
//! the client (this process, or the pgbench children it waited for) or the
//! server (the postmaster and its exited backends, which it reaped).
//! Resolution is one clock tick (10 ms), fine over multi-second runs.

use anyhow::{Context, Result};

/// Linux's `USER_HZ`, the unit of the times in `/proc/<pid>/stat`.
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds consumed so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// This process (all threads).
    pub own: f64,
    /// This process's waited-for children (pgbench, psql).
    pub children: f64,
    /// The postmaster and its waited-for children (backends that exited).
    pub server: f64,
}

/// (utime + stime, cutime + cstime) of `pid`, in seconds.
fn times(pid: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11) // state … cmajflt: fields 3..=13
        .take(4) // utime stime cutime cstime: fields 14..=17
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    anyhow::ensure!(f.len() == 4, "short stat for {pid}");
    Ok(((f[0] + f[1]) / TICKS_PER_S, (f[2] + f[3]) / TICKS_PER_S))
}

/// Reads the counters now.
pub fn snapshot(server_pid: Option<u32>) -> Snapshot {
    let (own, children) = times("self").unwrap_or_default();
    let server = server_pid
        .and_then(|pid| times(&pid.to_string()).ok())
        .map_or(0.0, |(a, b)| a + b);
    Snapshot {
        own,
        children,
        server,
    }
}
