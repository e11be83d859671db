//! The embedded server: initdb into a throw-away directory and a postmaster
//! that cannot outlive this process.
//!
//! Layout of one instance, under the temp directory:
//!
//! ```text
//! pg-provider-XXXXXX/      0711, our user; `owner.pid` = pid of this process
//!   data/                 0700, run-as user; PGDATA, with `postgres.log`
//! ```
//!
//! `owner.pid` lets a later run recognise and remove directories left by a
//! process that crashed before it could clean up.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::binaries;
use crate::error::ProviderError;
use crate::sql::{self, NotReady};

/// Prefix of instance directories in the temp directory.
const INSTANCE_PREFIX: &str = "pg-provider-";
/// File in the instance directory naming the owning process.
const OWNER_FILE: &str = "owner.pid";
/// Server log, inside the data directory.
const LOG_FILE: &str = "postgres.log";
/// The user initdb creates, a trusted superuser.
pub(crate) const SUPERUSER: &str = "postgres";
/// User to run as when we are root and `PG_RUN_AS` is unset.
const DEFAULT_RUN_AS: &str = "nobody";
/// How long the server gets to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts when another process takes the port between our probe and the bind.
const PORT_ATTEMPTS: usize = 3;

/// An unprivileged account to run PostgreSQL as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// When running as root: the user from `PG_RUN_AS`, else `nobody`. Otherwise `None` (run as self).
fn run_as_from_env() -> Result<Option<RunAs>, ProviderError> {
    if !binaries::is_root() {
        return Ok(None);
    }
    let name = std::env::var("PG_RUN_AS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_RUN_AS.to_string());
    lookup_user(name.trim()).map(Some)
}

/// Looks a user up in the password database (thread-safe `getpwnam_r`).
pub(crate) fn lookup_user(name: &str) -> Result<RunAs, ProviderError> {
    let fail = |reason: String| ProviderError::RunAsUser {
        name: name.to_string(),
        reason,
    };
    let c_name =
        std::ffi::CString::new(name).map_err(|_| fail("the name contains a NUL byte".into()))?;
    let mut buf_len = 4096usize;
    loop {
        let mut buf = vec![0 as libc::c_char; buf_len];
        // SAFETY: passwd is plain old data; all-zero is a valid (empty) value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf` outlives the reads of `pwd` below.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf_len < 1 << 20 {
            buf_len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(fail(io::Error::from_raw_os_error(rc).to_string()));
        }
        if result.is_null() {
            return Err(fail("no such user".into()));
        }
        if pwd.pw_uid == 0 {
            return Err(fail("it is root".into()));
        }
        return Ok(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// A command that runs as `run_as` when given (std drops supplementary groups then).
fn command(program: PathBuf, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).stdin(Stdio::null());
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// A free TCP port on 127.0.0.1 (free when we looked; see [`PORT_ATTEMPTS`]).
fn free_port() -> Result<u16, ProviderError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ProviderError::io("finding a free port on 127.0.0.1", e))
}

/// Whether a process with this pid runs (EPERM: it exists but is not ours).
///
/// Zombies count as dead: an orphaned postmaster that died is only reaped if
/// the init process of the machine or container bothers to.
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false; // kill(0 or negative) would address process groups
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Reads the state field of `/proc/<pid>/stat` (after the parenthesised command name).
fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Removes instance directories whose owner and postmaster are both dead.
///
/// Crashes and kills (`SIGKILL`, a test harness timing out) skip every clean-up
/// path; the postmaster then dies of `PR_SET_PDEATHSIG`, but its directory stays.
/// Directories without `owner.pid` are only taken when older than an hour, as
/// they may belong to a process that is creating them right now.
pub(crate) fn remove_stale_instances(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(INSTANCE_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let owner_dead = match read_pid(&path.join(OWNER_FILE)) {
            Some(pid) => !process_alive(pid),
            None => meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        let postmaster_dead = read_pid(&path.join("data").join("postmaster.pid"))
            .is_none_or(|pid| !process_alive(pid));
        if owner_dead && postmaster_dead {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The throw-away directories of one server.
#[derive(Debug)]
struct Instance {
    root: PathBuf,
    data: PathBuf,
}

impl Instance {
    fn create(run_as: Option<RunAs>) -> Result<Self, ProviderError> {
        let tmp = std::env::temp_dir();
        let root = tempfile::Builder::new()
            .prefix(INSTANCE_PREFIX)
            .tempdir_in(&tmp)
            .map_err(|e| {
                ProviderError::io(format!("creating a directory in {}", tmp.display()), e)
            })?
            .keep();
        let instance = Self {
            data: root.join("data"),
            root,
        };
        instance
            .populate(run_as)
            .inspect_err(|_| instance.remove())?;
        Ok(instance)
    }

    fn populate(&self, run_as: Option<RunAs>) -> Result<(), ProviderError> {
        let root = &self.root;
        fs::write(root.join(OWNER_FILE), format!("{}\n", std::process::id())).map_err(|e| {
            ProviderError::io(format!("writing {}/{OWNER_FILE}", root.display()), e)
        })?;
        // The run-as user must traverse the root but need not list it.
        fs::set_permissions(root, fs::Permissions::from_mode(0o711))
            .map_err(|e| ProviderError::io(format!("chmod {}", root.display()), e))?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.data)
            .map_err(|e| ProviderError::io(format!("creating {}", self.data.display()), e))?;
        if let Some(user) = run_as {
            std::os::unix::fs::chown(&self.data, Some(user.uid), Some(user.gid)).map_err(|e| {
                ProviderError::io(
                    format!("chown {} to uid {}", self.data.display(), user.uid),
                    e,
                )
            })?;
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.data.join(LOG_FILE)
    }

    /// The last lines of the server log, preceded by a header, or "".
    fn log_tail(&self) -> String {
        let Ok(mut file) = fs::File::open(self.log_path()) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        if text.trim().is_empty() {
            return String::new();
        }
        // No path: the directory is deleted when the start fails.
        format!(
            "\n--- postgres log (tail) ---\n{}",
            binaries::tail_lines(&text, 40)
        )
    }

    fn remove(&self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Whatever path ends an instance (error, cancelled start, shutdown), its files go.
impl Drop for Instance {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What the waiter thread last saw of the postmaster.
#[derive(Debug)]
enum ProcState {
    Running,
    Exited(String),
}

/// Shared between the waiter thread and everyone who may signal the postmaster.
type Shared = Arc<(Mutex<ProcState>, Condvar)>;

fn lock(state: &Mutex<ProcState>) -> MutexGuard<'_, ProcState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A postmaster owned by a dedicated thread.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
/// the process. Test harnesses run each test on a short-lived thread and each
/// `#[tokio::test]` on its own runtime, so the child is forked from a thread
/// that lives exactly as long as the child: it waits for it, and the signal
/// then only fires when the whole process dies.
#[derive(Debug)]
struct Postmaster {
    pid: u32,
    state: Shared,
    waiter: Mutex<Option<JoinHandle<()>>>,
}

impl Postmaster {
    fn spawn(mut cmd: Command) -> Result<Self, ProviderError> {
        let parent = std::process::id();
        // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid)
        // and allocates nothing. std runs it after setgid/setuid, so the death
        // signal is not reset by the credential change.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGQUIT as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // We may have been orphaned before prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }

        let state: Shared = Arc::new((Mutex::new(ProcState::Running), Condvar::new()));
        let thread_state = Arc::clone(&state);
        let (pid_tx, pid_rx) = std::sync::mpsc::channel::<io::Result<u32>>();
        let waiter = std::thread::Builder::new()
            .name("pg-provider-postmaster".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = pid_tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id();
                let _ = pid_tx.send(Ok(pid));
                // Wait without reaping, then reap under the lock: whoever holds
                // the lock and sees `Running` may signal `pid` without any risk
                // of hitting a recycled pid.
                wait_without_reaping(pid);
                let (mutex, cvar) = &*thread_state;
                let mut guard = lock(mutex);
                let how = match child.wait() {
                    Ok(status) => describe(status),
                    Err(e) => format!("unknown exit ({e})"),
                };
                *guard = ProcState::Exited(how);
                cvar.notify_all();
            })
            .map_err(|e| ProviderError::io("spawning the postmaster thread", e))?;

        let spawned = pid_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("postmaster thread ended early")));
        match spawned {
            Ok(pid) => Ok(Self {
                pid,
                state,
                waiter: Mutex::new(Some(waiter)),
            }),
            Err(e) => {
                let _ = waiter.join();
                Err(ProviderError::io("starting postgres", e))
            }
        }
    }

    /// How the postmaster ended, if it has.
    fn exited(&self) -> Option<String> {
        match &*lock(&self.state.0) {
            ProcState::Running => None,
            ProcState::Exited(how) => Some(how.clone()),
        }
    }

    /// Sends `signal` if the postmaster is still running.
    fn signal(&self, signal: libc::c_int) {
        let guard = lock(&self.state.0);
        if matches!(*guard, ProcState::Running)
            && let Ok(pid) = i32::try_from(self.pid)
        {
            // SAFETY: `pid` is our unreaped child (checked under the lock).
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Waits up to `timeout` for the postmaster to exit; true if it did.
    fn wait_exit(&self, timeout: Duration) -> bool {
        let (mutex, cvar) = &*self.state;
        let guard = lock(mutex);
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |s| matches!(s, ProcState::Running))
            .unwrap_or_else(|e| e.into_inner());
        matches!(*guard, ProcState::Exited(_))
    }

    /// Fast shutdown (SIGINT), then SIGKILL after [`STOP_GRACE`]. Idempotent.
    fn stop(&self) {
        self.signal(libc::SIGINT);
        if !self.wait_exit(STOP_GRACE) {
            self.signal(libc::SIGKILL);
            self.wait_exit(Duration::from_secs(5));
        }
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Joining a thread whose child refuses to die would hang: only join after exit.
        if let Some(waiter) = waiter
            && self.exited().is_some()
        {
            let _ = waiter.join();
        }
    }
}

/// A postmaster is never left running by accident, e.g. when a start is cancelled.
impl Drop for Postmaster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Blocks until `pid` has exited, leaving it to be reaped by `Child::wait`.
fn wait_without_reaping(pid: u32) {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: siginfo_t is plain old data; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; the pid is our child.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// A running embedded server. [`Embedded::stop`] reports errors; dropping it stops it silently.
#[derive(Debug)]
pub(crate) struct Embedded {
    pub port: u16,
    pub bin_dir: PathBuf,
    // Field order is drop order: stop the server before deleting its files.
    postmaster: Postmaster,
    instance: Instance,
}

impl Embedded {
    /// Data directory of the server.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.instance.data
    }

    /// Process id of the postmaster.
    pub(crate) fn pid(&self) -> u32 {
        self.postmaster.pid
    }

    /// Stops the server and deletes its directories.
    pub(crate) fn stop(&self) -> Result<(), ProviderError> {
        self.postmaster.stop();
        fs::remove_dir_all(&self.instance.root).or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(ProviderError::io(
                    format!("removing {}", self.instance.root.display()),
                    e,
                ))
            }
        })
    }
}

/// Connection URL of the embedded server for `database`.
pub(crate) fn url(port: u16, database: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
}

/// Finds the binaries, initialises a cluster and starts a postmaster on a free port.
pub(crate) async fn start() -> Result<Embedded, ProviderError> {
    let (bin_dir, instance, run_as) = tokio::task::spawn_blocking(prepare)
        .await
        .map_err(|e| ProviderError::io("preparing the embedded server", io::Error::other(e)))??;

    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match free_port() {
            Ok(port) => port,
            Err(e) => {
                instance.remove();
                return Err(e);
            }
        };
        let postmaster = match spawn_postmaster(&bin_dir, &instance, port, run_as) {
            Ok(p) => p,
            Err(e) => {
                instance.remove();
                return Err(e);
            }
        };
        let probe_url = url(port, "postgres");
        let waiting_since = Instant::now();
        let ready = sql::wait_ready(
            READY_TIMEOUT,
            Duration::from_millis(50),
            || sql::probe(&probe_url),
            || postmaster.exited(),
        )
        .await;
        let (reason, exited) = match ready {
            Ok(()) => {
                return Ok(Embedded {
                    port,
                    bin_dir,
                    instance,
                    postmaster,
                });
            }
            Err(NotReady::TimedOut(last)) => (format!("last connection error: {last}"), false),
            Err(NotReady::Exited(how)) => (format!("postgres {how}"), true),
        };
        // Stop without blocking the runtime for the grace period.
        let log_tail = instance.log_tail();
        let postmaster = Arc::new(postmaster);
        let stopper = Arc::clone(&postmaster);
        let _ = tokio::task::spawn_blocking(move || stopper.stop()).await;
        let port_taken = exited && log_tail.contains("already in use");
        if port_taken && attempt < PORT_ATTEMPTS {
            let _ = fs::remove_file(instance.log_path());
            let _ = fs::remove_file(instance.data.join("postmaster.pid"));
            continue;
        }
        instance.remove();
        return Err(ProviderError::NotReady {
            waited: waiting_since.elapsed(),
            reason,
            log_tail,
        });
    }
}

/// The blocking part of [`start`]: binaries, stale clean-up, initdb.
fn prepare() -> Result<(PathBuf, Instance, Option<RunAs>), ProviderError> {
    let bin_dir = binaries::binaries()?;
    remove_stale_instances(&std::env::temp_dir());
    let run_as = run_as_from_env()?;
    let instance = Instance::create(run_as)?;
    initdb(&bin_dir, &instance, run_as).inspect_err(|_| instance.remove())?;
    Ok((bin_dir, instance, run_as))
}

fn initdb(bin_dir: &Path, instance: &Instance, run_as: Option<RunAs>) -> Result<(), ProviderError> {
    let started = Instant::now();
    let output = command(bin_dir.join("initdb"), run_as, &instance.root)
        .arg("-D")
        .arg(&instance.data)
        .args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            // A throw-away cluster: no need to wait for fsync.
            "--no-sync",
            "--no-instructions",
        ])
        .output()
        .map_err(|e| {
            ProviderError::io(
                format!(
                    "running {}/initdb (it must be executable by the run-as user)",
                    bin_dir.display()
                ),
                e,
            )
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(ProviderError::InitDb {
        status: format!("{} after {:?}", describe(output.status), started.elapsed()),
        output: text,
    })
}

fn spawn_postmaster(
    bin_dir: &Path,
    instance: &Instance,
    port: u16,
    run_as: Option<RunAs>,
) -> Result<Postmaster, ProviderError> {
    let log_path = instance.log_path();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| ProviderError::io(format!("opening {}", log_path.display()), e))?;
    if let Some(user) = run_as {
        let _ = std::os::unix::fs::chown(&log_path, Some(user.uid), Some(user.gid));
    }
    let log_err = log
        .try_clone()
        .map_err(|e| ProviderError::io(format!("opening {}", log_path.display()), e))?;
    let mut cmd = command(bin_dir.join("postgres"), run_as, &instance.root);
    cmd.arg("-D")
        .arg(&instance.data)
        .arg("-p")
        .arg(port.to_string())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ])
        .args(crate::THROWAWAY_SERVER_SETTINGS)
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    Postmaster::spawn(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_exists_and_root_is_refused() {
        let nobody = lookup_user("nobody").unwrap();
        assert_ne!(nobody.uid, 0);
        assert!(matches!(
            lookup_user("root"),
            Err(ProviderError::RunAsUser { .. })
        ));
        let err = lookup_user("no-such-user-pg-provider").unwrap_err();
        assert!(err.to_string().contains("no such user"), "{err}");
    }

    #[test]
    fn stale_instances_are_removed_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let stale = tmp.path().join("pg-provider-stale");
        let live = tmp.path().join("pg-provider-live");
        let young = tmp.path().join("pg-provider-young");
        let other = tmp.path().join("something-else");
        for dir in [&stale, &live, &young, &other] {
            fs::create_dir_all(dir.join("data")).unwrap();
        }
        // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
        fs::write(stale.join(OWNER_FILE), "99999999\n").unwrap();
        fs::write(live.join(OWNER_FILE), format!("{}\n", std::process::id())).unwrap();
        fs::write(other.join(OWNER_FILE), "99999999\n").unwrap();
        remove_stale_instances(tmp.path());
        assert!(!stale.exists());
        assert!(live.exists());
        assert!(
            young.exists(),
            "no owner.pid but recent: may be in the making"
        );
        assert!(other.exists());
    }

    #[test]
    fn stale_owner_but_live_postmaster_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pg-provider-x");
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join(OWNER_FILE), "99999999\n").unwrap();
        fs::write(
            dir.join("data/postmaster.pid"),
            format!("{}\n/data\n", std::process::id()),
        )
        .unwrap();
        remove_stale_instances(tmp.path());
        assert!(dir.exists());
    }

    #[test]
    fn process_alive_guards_special_pids() {
        assert!(process_alive(i32::try_from(std::process::id()).unwrap()));
        assert!(!process_alive(0));
        assert!(!process_alive(-1));
        assert!(!process_alive(99_999_999));
    }

    #[test]
    fn postmaster_wrapper_stops_a_child_and_reports_exit() {
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let child = Postmaster::spawn(cmd).unwrap();
        let pid = i32::try_from(child.pid).unwrap();
        assert!(child.exited().is_none());
        assert!(process_alive(pid));
        child.stop();
        assert_eq!(child.exited().as_deref(), Some("killed by signal 2"));
        assert!(!process_alive(pid));
        child.stop(); // idempotent
    }
}
