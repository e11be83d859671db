//! Choosing where the server comes from, separated from the environment so it is testable.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::ProviderKind;
use crate::error::ProviderError;

/// The Docker socket probed when `DOCKER_HOST` is unset.
pub(crate) const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// What a Docker probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Docker {
    /// A daemon is (probably) there; the string says how we know.
    Available(String),
    /// No daemon; the string says what was tried.
    Unavailable(String),
}

/// What [`choose`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Use the server behind this URL.
    Url(String),
    /// Start a container; on failure fall back to the embedded server if allowed.
    Container { fallback_to_embedded: bool },
    /// Start an embedded server.
    Embedded,
}

/// Parses `PG_PROVIDER`. Unset or blank means "choose automatically".
pub(crate) fn parse_forced(value: Option<&str>) -> Result<Option<ProviderKind>, ProviderError> {
    let Some(raw) = value else { return Ok(None) };
    match raw.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "url" => Ok(Some(ProviderKind::DatabaseUrl)),
        "docker" => Ok(Some(ProviderKind::Container)),
        "embedded" => Ok(Some(ProviderKind::Embedded)),
        _ => Err(ProviderError::InvalidChoice {
            value: raw.to_string(),
        }),
    }
}

/// Decides the provider from explicit inputs.
///
/// `docker` is only called when the answer matters, so a Docker probe is not
/// paid for when `DATABASE_URL` is set or the embedded server is forced.
pub(crate) fn choose(
    forced: Option<ProviderKind>,
    database_url: Option<String>,
    docker: impl FnOnce() -> Docker,
) -> Result<Plan, ProviderError> {
    match forced {
        Some(ProviderKind::DatabaseUrl) => database_url
            .map(Plan::Url)
            .ok_or(ProviderError::MissingDatabaseUrl),
        Some(ProviderKind::Container) => match docker() {
            Docker::Available(_) => Ok(Plan::Container {
                fallback_to_embedded: false,
            }),
            Docker::Unavailable(detail) => Err(ProviderError::DockerUnavailable { detail }),
        },
        Some(ProviderKind::Embedded) => Ok(Plan::Embedded),
        None => {
            if let Some(url) = database_url {
                return Ok(Plan::Url(url));
            }
            Ok(match docker() {
                Docker::Available(_) => Plan::Container {
                    fallback_to_embedded: true,
                },
                Docker::Unavailable(_) => Plan::Embedded,
            })
        }
    }
}

/// Looks for a Docker daemon.
///
/// A set `DOCKER_HOST` counts as a daemon without probing (it may be TCP or
/// SSH; a failed container start falls back anyway). Otherwise the default
/// socket must exist and answer `GET /_ping` with 200 within a short timeout:
/// a stale socket file left by a stopped daemon must not make us wait for
/// testcontainers' own, much longer, timeouts.
pub(crate) fn probe_docker(docker_host: Option<&str>, socket: &Path) -> Docker {
    if let Some(host) = docker_host.filter(|h| !h.trim().is_empty()) {
        return Docker::Available(format!("DOCKER_HOST={host}"));
    }
    if !socket.exists() {
        return Docker::Unavailable(format!(
            "DOCKER_HOST is not set and {} does not exist",
            socket.display()
        ));
    }
    match ping_unix_socket(socket, Duration::from_secs(2)) {
        Ok(()) => Docker::Available(format!("{} answers", socket.display())),
        Err(why) => Docker::Unavailable(format!(
            "DOCKER_HOST is not set and {} does not answer: {why}",
            socket.display()
        )),
    }
}

/// Sends Docker's `GET /_ping` over a unix socket and expects HTTP 200.
fn ping_unix_socket(socket: &Path, timeout: Duration) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&head[..n]);
    let status_line = head.lines().next().unwrap_or("");
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("unexpected answer {status_line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn no_docker() -> Docker {
        Docker::Unavailable("test: none".into())
    }

    fn docker() -> Docker {
        Docker::Available("test".into())
    }

    #[test]
    fn parse_forced_values() {
        assert_eq!(parse_forced(None).unwrap(), None);
        assert_eq!(parse_forced(Some(" ")).unwrap(), None);
        assert_eq!(
            parse_forced(Some("url")).unwrap(),
            Some(ProviderKind::DatabaseUrl)
        );
        assert_eq!(
            parse_forced(Some("Docker")).unwrap(),
            Some(ProviderKind::Container)
        );
        assert_eq!(
            parse_forced(Some("embedded")).unwrap(),
            Some(ProviderKind::Embedded)
        );
        let err = parse_forced(Some("podman")).unwrap_err();
        assert!(err.to_string().contains("\"podman\""), "{err}");
    }

    #[test]
    fn automatic_order_is_url_then_docker_then_embedded() {
        let url = "postgres://u@h/db".to_string();
        assert_eq!(
            choose(None, Some(url.clone()), || panic!("must not probe docker")).unwrap(),
            Plan::Url(url)
        );
        assert_eq!(
            choose(None, None, docker).unwrap(),
            Plan::Container {
                fallback_to_embedded: true
            }
        );
        assert_eq!(choose(None, None, no_docker).unwrap(), Plan::Embedded);
    }

    #[test]
    fn forced_choices() {
        assert_eq!(
            choose(
                Some(ProviderKind::Embedded),
                Some("postgres://x".into()),
                || { panic!("must not probe docker") }
            )
            .unwrap(),
            Plan::Embedded
        );
        assert_eq!(
            choose(
                Some(ProviderKind::Container),
                Some("postgres://x".into()),
                docker
            )
            .unwrap(),
            Plan::Container {
                fallback_to_embedded: false
            }
        );
        assert!(matches!(
            choose(Some(ProviderKind::DatabaseUrl), None, docker),
            Err(ProviderError::MissingDatabaseUrl)
        ));
    }

    #[test]
    fn forced_docker_without_a_daemon_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let err = choose(Some(ProviderKind::Container), None, || {
            probe_docker(None, &socket)
        })
        .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ProviderError::DockerUnavailable { .. }));
        assert!(
            message.starts_with("PG_PROVIDER=docker but no Docker daemon is available")
                && message.contains("does not exist"),
            "{message}"
        );
    }

    #[test]
    fn docker_host_counts_without_probing() {
        let probe = probe_docker(Some("tcp://10.0.0.1:2375"), Path::new("/nonexistent"));
        assert!(matches!(probe, Docker::Available(_)), "{probe:?}");
        let probe = probe_docker(Some(""), Path::new("/nonexistent/docker.sock"));
        assert!(matches!(probe, Docker::Unavailable(_)), "{probe:?}");
    }

    #[test]
    fn socket_must_answer_ping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                &b"HTTP/1.1 200 OK\r\n\r\nOK"[..],
                b"HTTP/1.1 500 Oops\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(answer).unwrap();
            }
        });
        assert!(matches!(probe_docker(None, &path), Docker::Available(_)));
        let probe = probe_docker(None, &path);
        assert!(
            matches!(&probe, Docker::Unavailable(why) if why.contains("500")),
            "{probe:?}"
        );
        server.join().unwrap();
        // A stale socket file with nobody listening.
        let probe = probe_docker(None, &path);
        assert!(matches!(probe, Docker::Unavailable(_)), "{probe:?}");
    }
}
