//! Connection URLs, identifier quoting, readiness polling and the few maintenance statements.

use std::future::Future;
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use url::Url;

use crate::error::ProviderError;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Quotes `name` as a PostgreSQL identifier (`"..."`, inner quotes doubled).
///
/// Names PostgreSQL would silently truncate or cannot store are rejected
/// instead, so `create_database("x")` never creates a database called
/// something else.
pub(crate) fn quote_ident(name: &str) -> Result<String, ProviderError> {
    let reject = |reason| {
        Err(ProviderError::InvalidIdentifier {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("it is empty");
    }
    if name.contains('\0') {
        return reject("it contains a NUL character");
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return reject("it is longer than 63 bytes and PostgreSQL would truncate it");
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Parses and checks a `postgres://` / `postgresql://` URL.
pub(crate) fn parse_server_url(raw: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(raw).map_err(|e| ProviderError::InvalidDatabaseUrl {
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(ProviderError::InvalidDatabaseUrl {
            reason: format!("scheme {:?} is not postgres or postgresql", url.scheme()),
        });
    }
    if url.cannot_be_a_base() {
        return Err(ProviderError::InvalidDatabaseUrl {
            reason: "expected postgres://[user[:password]@]host[:port]/database".into(),
        });
    }
    Ok(url)
}

/// The database a URL names, as libpq would pick it: the path, else the user name.
pub(crate) fn database_of(url: &Url) -> String {
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() {
        return percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned();
    }
    if !url.username().is_empty() {
        return percent_encoding::percent_decode_str(url.username())
            .decode_utf8_lossy()
            .into_owned();
    }
    "postgres".to_string()
}

/// `base` with its database replaced by `database` (percent-encoded; query kept).
pub(crate) fn url_for_database(base: &Url, database: &str) -> String {
    let mut url = base.clone();
    // Infallible: `parse_server_url` rejected cannot-be-a-base URLs.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.clear().push(database);
    }
    url.to_string()
}

/// `url` with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// Why [`wait_ready`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// The deadline passed; the last attempt's error.
    TimedOut(String),
    /// The server is gone; how it ended.
    Exited(String),
}

/// Polls `attempt` every `interval` until it succeeds, `exited` reports the
/// server gone, or `timeout` passes.
///
/// Polling a real connection (rather than waiting for a log line) is what
/// tells us the server accepts clients on the address we will use: the
/// `postgres` image prints "ready to accept connections" twice, first for a
/// temporary socket-only server during initialisation.
pub(crate) async fn wait_ready<F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut attempt: F,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), NotReady>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no connection attempt finished");
    loop {
        if let Some(how) = exited() {
            return Err(NotReady::Exited(how));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(NotReady::TimedOut(last_error));
        }
        match tokio::time::timeout(remaining, attempt()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last_error = e,
            Err(_) => return Err(NotReady::TimedOut(last_error)),
        }
        tokio::time::sleep(interval.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// One readiness probe: connect and run `SELECT 1`.
pub(crate) async fn probe(url: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let result = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    let _ = conn.close().await;
    result
}

/// Connects to `url`, runs one statement outside a transaction, disconnects.
pub(crate) async fn execute(url: &str, sql: String, context: &str) -> Result<(), ProviderError> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| ProviderError::sql(format!("{context}: connecting"), e))?;
    let result = sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(|e| ProviderError::sql(context, e));
    let _ = conn.close().await;
    result
}

/// Reads `server_version_num` (e.g. 180001).
pub(crate) async fn server_version_num(url: &str) -> Result<i32, ProviderError> {
    let context = "reading server_version_num";
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| ProviderError::sql(format!("{context}: connecting"), e))?;
    let result = sqlx::query_scalar::<_, i32>("SELECT current_setting('server_version_num')::int4")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| ProviderError::sql(context, e));
    let _ = conn.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("app").unwrap(), "\"app\"");
        assert_eq!(quote_ident("My DB").unwrap(), "\"My DB\"");
        assert_eq!(
            quote_ident("x\"; DROP DATABASE y; --").unwrap(),
            "\"x\"\"; DROP DATABASE y; --\""
        );
        assert_eq!(quote_ident("ünï").unwrap(), "\"ünï\"");
        assert!(quote_ident("").is_err());
        assert!(quote_ident("a\0b").is_err());
        assert!(quote_ident(&"a".repeat(63)).is_ok());
        let err = quote_ident(&"a".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("63 bytes"), "{err}");
    }

    #[test]
    fn url_with_database_name() {
        let base = parse_server_url("postgres://app:s%40cret@db.example:6543/main?sslmode=require")
            .unwrap();
        assert_eq!(database_of(&base), "main");
        assert_eq!(
            url_for_database(&base, "test_1"),
            "postgres://app:s%40cret@db.example:6543/test_1?sslmode=require"
        );
        assert_eq!(
            url_for_database(&base, "my db/x?y#z"),
            "postgres://app:s%40cret@db.example:6543/my%20db%2Fx%3Fy%23z?sslmode=require"
        );
        let round = Url::parse(&url_for_database(&base, "my db/x?y#z")).unwrap();
        assert_eq!(database_of(&round), "my db/x?y#z");
        assert_eq!(
            redact(&base),
            "postgres://app:***@db.example:6543/main?sslmode=require"
        );
    }

    #[test]
    fn database_defaults_like_libpq() {
        assert_eq!(
            database_of(&parse_server_url("postgres://bob@h").unwrap()),
            "bob"
        );
        assert_eq!(
            database_of(&parse_server_url("postgresql://h:1/").unwrap()),
            "postgres"
        );
        let no_db = parse_server_url("postgres://bob@h:5432").unwrap();
        assert_eq!(url_for_database(&no_db, "x"), "postgres://bob@h:5432/x");
    }

    #[test]
    fn rejects_non_postgres_urls() {
        assert!(parse_server_url("mysql://h/db").is_err());
        assert!(parse_server_url("postgres:db").is_err());
        assert!(parse_server_url("not a url").is_err());
    }

    #[tokio::test]
    async fn ready_after_failures() {
        let tries = Cell::new(0);
        let result = wait_ready(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move {
                    if n < 3 {
                        Err(format!("refused {n}"))
                    } else {
                        Ok(())
                    }
                }
            },
            || None,
        )
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(tries.get(), 3);
    }

    #[tokio::test]
    async fn times_out_with_last_error() {
        let result = wait_ready(
            Duration::from_millis(50),
            Duration::from_millis(5),
            || async { Err("connection refused".to_string()) },
            || None,
        )
        .await;
        assert_eq!(result, Err(NotReady::TimedOut("connection refused".into())));
    }

    #[tokio::test]
    async fn a_hanging_attempt_does_not_outlive_the_timeout() {
        let started = Instant::now();
        let result = wait_ready(
            Duration::from_millis(50),
            Duration::from_millis(5),
            std::future::pending::<Result<(), String>>,
            || None,
        )
        .await;
        assert!(matches!(result, Err(NotReady::TimedOut(_))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn stops_when_the_server_exits() {
        let result = wait_ready(
            Duration::from_secs(30),
            Duration::from_millis(1),
            || async { Err("refused".to_string()) },
            || Some("exit status: 1".to_string()),
        )
        .await;
        assert_eq!(result, Err(NotReady::Exited("exit status: 1".into())));
    }
}
