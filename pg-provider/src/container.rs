//! A `postgres:18` container through testcontainers.
//!
//! All container work runs on one process-wide tokio runtime owned by this
//! module, never on the caller's. testcontainers shares one Docker client
//! per process (its pooled connections live on the runtime that opened them)
//! and removes containers through the current runtime; a server shared by
//! many `#[tokio::test]`s, each with its own short-lived runtime, must not
//! depend on whichever runtime happened to start it, and must be removable
//! from an `atexit` hook where no runtime exists at all.

use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use testcontainers::core::{ContainerPort, IntoContainerPort};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerRequest, GenericImage, ImageExt};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::error::ProviderError;

/// Image name.
pub(crate) const IMAGE: &str = "postgres";
/// Image tag: the major version we need.
pub(crate) const TAG: &str = "18";
/// Port PostgreSQL listens on inside the container.
pub(crate) const PORT: u16 = 5432;
/// Superuser of the image.
pub(crate) const USER: &str = "postgres";
/// Password given to the image's superuser.
pub(crate) const PASSWORD: &str = "postgres";
/// Label that marks containers started by this crate (to find leftovers).
pub(crate) const LABEL: &str = "org.refresh-session-kit.pg-provider";
/// How long the server inside gets to accept connections (first start includes initdb).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn container_port() -> ContainerPort {
    PORT.tcp()
}

/// The container request: `postgres:18`, a password, and the same
/// durability-off settings as the embedded server.
///
/// No wait condition: readiness is decided by polling a real connection
/// (see [`crate::sql::wait_ready`]), because the image logs "ready to accept
/// connections" twice and the first time is a socket-only bootstrap server.
pub(crate) fn request() -> ContainerRequest<GenericImage> {
    GenericImage::new(IMAGE, TAG)
        .with_exposed_port(container_port())
        .with_env_var("POSTGRES_PASSWORD", PASSWORD)
        .with_label(LABEL, "true")
        .with_startup_timeout(Duration::from_secs(60))
        .with_cmd(std::iter::once("postgres").chain(crate::THROWAWAY_SERVER_SETTINGS))
}

/// Base URL of a container reachable at `host:port` for `database`.
pub(crate) fn url(host: &str, port: u16, database: &str) -> String {
    format!("postgres://{USER}:{PASSWORD}@{host}:{port}/{database}")
}

/// How long removing a container may take before we stop waiting for Docker.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime all container work runs on; it lives until the process exits.
fn runtime() -> Result<&'static Runtime, ProviderError> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // Serialised so that no losing runtime is ever dropped (which panics in async code).
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pg-provider-docker")
        .enable_all()
        .build()
        .map_err(|e| ProviderError::io("creating the runtime for containers", e))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// A started container; removed by [`Container::stop`].
#[derive(Debug)]
pub(crate) struct Container {
    /// Host to connect to (IPv6 addresses in brackets).
    pub host: String,
    /// Host port mapped to 5432.
    pub port: u16,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    removed: Mutex<Option<mpsc::Receiver<()>>>,
}

/// Host and port of a started container, or why it failed.
type Started = Result<(String, u16), String>;

/// Starts the container and returns once Docker reports it running with a mapped port.
pub(crate) async fn start() -> Result<Container, ProviderError> {
    let (ready_tx, ready_rx) = oneshot::channel::<Started>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (removed_tx, removed_rx) = mpsc::channel::<()>();
    runtime()?.spawn(keep(ready_tx, stop_rx, removed_tx));
    let started = ready_rx
        .await
        .unwrap_or_else(|_| Err("the container task ended early".into()));
    match started {
        Ok((host, port)) => Ok(Container {
            host,
            port,
            stop: Mutex::new(Some(stop_tx)),
            removed: Mutex::new(Some(removed_rx)),
        }),
        Err(detail) => Err(ProviderError::Container { detail }),
    }
}

/// The container's whole life: start, report, wait for the stop signal, remove.
async fn keep(
    ready: oneshot::Sender<Started>,
    stop: oneshot::Receiver<()>,
    removed: mpsc::Sender<()>,
) {
    let started = async {
        let container = request().start().await.map_err(|e| e.to_string())?;
        let address = async {
            let host = container.get_host().await?;
            let port = container.get_host_port_ipv4(container_port()).await?;
            Ok::<_, testcontainers::TestcontainersError>((host.to_string(), port))
        }
        .await;
        match address {
            Ok((host, port)) => Ok((container, host, port)),
            Err(e) => {
                let _ = container.rm().await;
                Err(e.to_string())
            }
        }
    }
    .await;
    match started {
        Ok((container, host, port)) => {
            // If the caller went away, or once it says stop (or drops the
            // sender), remove the container.
            if ready.send(Ok((host, port))).is_ok() {
                let _ = stop.await;
            }
            let _ = container.rm().await;
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
    let _ = removed.send(());
}

impl Container {
    /// Removes the container, blocking until Docker confirms (at most a minute). Idempotent.
    pub(crate) fn stop(&self) {
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let removed = self
            .removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(removed) = removed {
            let _ = removed.recv_timeout(REMOVE_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testcontainers::Image;

    #[test]
    fn request_is_postgres_18_with_port_and_password() {
        let request = request();
        assert_eq!(request.image().name(), "postgres");
        assert_eq!(request.image().tag(), "18");
        assert_eq!(request.descriptor(), "postgres:18");
        assert!(request.image().expose_ports().contains(&5432.tcp()));
        let env: Vec<(String, String)> = request
            .env_vars()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert!(env.contains(&("POSTGRES_PASSWORD".into(), PASSWORD.into())));
        assert_eq!(
            request.labels().get(LABEL).map(String::as_str),
            Some("true")
        );
        let cmd: Vec<String> = request.cmd().map(|c| c.into_owned()).collect();
        assert_eq!(cmd.first().map(String::as_str), Some("postgres"));
        assert!(cmd.iter().any(|c| c == "max_connections=300"));
    }

    #[test]
    fn readiness_is_left_to_connection_polling() {
        // A log-line condition would fire on the bootstrap server's first
        // "ready to accept connections"; we poll a real connection instead.
        assert!(request().ready_conditions().is_empty());
    }

    #[test]
    fn url_uses_the_mapped_port() {
        assert_eq!(
            url("localhost", 49153, "postgres"),
            "postgres://postgres:postgres@localhost:49153/postgres"
        );
        assert_eq!(
            url("[::1]", 1, "x"),
            "postgres://postgres:postgres@[::1]:1/x"
        );
    }
}
