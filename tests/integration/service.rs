//! The refresh-token service against a real PostgreSQL 18, connected as the
//! service's own roles (`refresh_service`, `refresh_maintenance`), never as
//! the table owner.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use service::{
    Claims, Config, Error, Key, Keyring, Maintenance, RefreshService, SessionRef, TokenError,
};
use tokio::sync::Barrier;
use uuid::Uuid;

use tests::TestDb;

type TestResult = anyhow::Result<()>;

// ---------------------------------------------------------------- helpers

fn keys() -> Keyring {
    Keyring::new(Key::new("test-1", [0x5a; 32]).expect("valid key"))
}

fn strict() -> Config {
    Config {
        grace: Duration::ZERO,
        ..Config::default()
    }
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

async fn create_user(owner: &DatabaseConnection, email: &str) -> anyhow::Result<i32> {
    let row = owner
        .query_one_raw(stmt(
            r#"INSERT INTO auth."user" (email) VALUES ($1) RETURNING id"#,
            vec![email.into()],
        ))
        .await?
        .expect("a row");
    Ok(row.try_get("", "id")?)
}

/// Every column of every session, as text, read as the owner.
async fn rows(owner: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    let rows = owner
        .query_all_raw(stmt(
            "SELECT concat_ws('|', id, jti, user_id, refresh_version, created_at, last_used_at, \
             expires_at, user_agent, ip_address) AS r FROM auth.refresh_session ORDER BY id",
            vec![],
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String>("", "r"))
        .collect::<Result<_, _>>()?)
}

async fn version_of(owner: &DatabaseConnection, jti: Uuid) -> anyhow::Result<Option<i32>> {
    Ok(owner
        .query_one_raw(stmt(
            "SELECT refresh_version FROM auth.refresh_session WHERE jti = $1",
            vec![jti.into()],
        ))
        .await?
        .map(|r| r.try_get("", "refresh_version"))
        .transpose()?)
}

async fn exec(owner: &DatabaseConnection, sql: &str, values: Vec<Value>) -> TestResult {
    owner.execute_raw(stmt(sql, values)).await?;
    Ok(())
}

struct Fixture {
    db: TestDb,
    owner: DatabaseConnection,
    svc: RefreshService,
}

async fn fixture(config: Config) -> anyhow::Result<Fixture> {
    let db = TestDb::new().await?;
    let owner = db.connect().await?;
    let svc = RefreshService::new(db.connect_as("refresh_service").await?, keys(), config).await?;
    Ok(Fixture { db, owner, svc })
}

// ------------------------------------------------------------ concurrency

/// Both concurrency tests hold 32 connections; run them one at a time so a
/// shared server's connection limit is not the thing under test.
static THIRTY_TWO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CALLERS: usize = 32;
const ROUNDS: usize = 50;

/// One service per caller, each with its own pool, so every rotate of a
/// round runs on its own connection; reused across rounds.
async fn callers(db: &TestDb, config: Config) -> anyhow::Result<Vec<Arc<RefreshService>>> {
    let mut all = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let conn = db.connect_as("refresh_service").await?;
        all.push(Arc::new(RefreshService::new(conn, keys(), config).await?));
    }
    Ok(all)
}

async fn race(callers: &[Arc<RefreshService>], token: &str) -> Vec<Result<service::Issued, Error>> {
    let barrier = Arc::new(Barrier::new(callers.len()));
    let tasks: Vec<_> = callers
        .iter()
        .map(|svc| {
            let svc = Arc::clone(svc);
            let barrier = Arc::clone(&barrier);
            let token = token.to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                svc.rotate(&token).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("task panicked"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_rotation_under_32_concurrent_callers_lets_exactly_one_win_and_revokes_the_session()
-> TestResult {
    let _one_at_a_time = THIRTY_TWO.lock().await;
    let started = Instant::now();
    let f = fixture(strict()).await?;
    let user = create_user(&f.owner, "race@example.com").await?;
    let callers = callers(&f.db, strict()).await?;
    for round in 0..ROUNDS {
        let issued = f.svc.issue(user, None, None).await?;
        let results = race(&callers, issued.token.expose_secret()).await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        let reuse = results
            .iter()
            .filter(|r| matches!(r, Err(Error::ReuseDetected)))
            .count();
        assert!(reuse >= 1, "round {round}: nobody detected the reuse");
        for r in &results {
            assert!(
                matches!(
                    r,
                    Ok(_) | Err(Error::ReuseDetected) | Err(Error::SessionNotFound)
                ),
                "round {round}: {r:?}"
            );
        }
        assert_eq!(
            version_of(&f.owner, issued.jti).await?,
            None,
            "round {round}: session survived"
        );
    }
    eprintln!("strict race: {ROUNDS}x{CALLERS} in {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_with_grace_under_32_concurrent_callers_hands_everyone_the_winners_token()
-> TestResult {
    let _one_at_a_time = THIRTY_TWO.lock().await;
    let started = Instant::now();
    let config = Config::default();
    let f = fixture(config).await?;
    let user = create_user(&f.owner, "tabs@example.com").await?;
    let callers = callers(&f.db, config).await?;
    for round in 0..ROUNDS {
        let issued = f.svc.issue(user, None, None).await?;
        let results = race(&callers, issued.token.expose_secret()).await;
        let tokens: Vec<_> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("round {round}: {e:?}")))
            .collect();
        assert!(
            tokens.iter().all(|t| t.token == tokens[0].token),
            "round {round}: tokens differ"
        );
        assert!(
            tokens
                .iter()
                .all(|t| t.refresh_version == issued.refresh_version + 1)
        );
        assert_eq!(
            version_of(&f.owner, issued.jti).await?,
            Some(issued.refresh_version + 1),
            "round {round}: version must go up by exactly one"
        );
        // The converged token is the live one.
        let next = f.svc.rotate(tokens[0].token.expose_secret()).await?;
        assert_eq!(next.refresh_version, issued.refresh_version + 2);
    }
    eprintln!("grace race: {ROUNDS}x{CALLERS} in {:?}", started.elapsed());
    Ok(())
}

// --------------------------------------------------------------- lifecycle

#[tokio::test]
async fn rotation_moves_the_version_up_and_slides_expiry_within_the_absolute_cap() -> TestResult {
    let config = Config {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(4 * 3600),
        grace: Duration::ZERO,
    };
    let f = fixture(config).await?;
    let user = create_user(&f.owner, "life@example.com").await?;
    let first = f
        .svc
        .issue(user, Some("agent/1"), Some("2001:db8::1"))
        .await?;
    assert_eq!(first.refresh_version, 0);
    let second = f.svc.rotate(first.token.expose_secret()).await?;
    assert_eq!((second.jti, second.refresh_version), (first.jti, 1));
    assert!(second.expires_at >= first.expires_at);
    assert_ne!(second.token, first.token);

    // Near the absolute cap, expiry stops sliding at created_at + absolute.
    exec(
        &f.owner,
        "UPDATE auth.refresh_session SET created_at = now() - interval '3 hours 30 minutes' \
         WHERE jti = $1",
        vec![first.jti.into()],
    )
    .await?;
    let third = f.svc.rotate(second.token.expose_secret()).await?;
    let capped = f
        .owner
        .query_one_raw(stmt(
            "SELECT expires_at = created_at + interval '4 hours' AS capped \
             FROM auth.refresh_session WHERE jti = $1",
            vec![first.jti.into()],
        ))
        .await?
        .expect("row");
    assert!(capped.try_get::<bool>("", "capped")?, "expiry not capped");
    assert!(third.expires_at < chrono::Utc::now() + chrono::Duration::minutes(31));
    Ok(())
}

#[tokio::test]
async fn a_token_replayed_after_rotation_outside_the_grace_window_revokes_the_session() -> TestResult
{
    let f = fixture(strict()).await?;
    let user = create_user(&f.owner, "victim@example.com").await?;
    let stolen = f.svc.issue(user, None, None).await?;
    let legit = f.svc.rotate(stolen.token.expose_secret()).await?;
    let legit = f.svc.rotate(legit.token.expose_secret()).await?;

    assert!(matches!(
        f.svc.rotate(stolen.token.expose_secret()).await,
        Err(Error::ReuseDetected)
    ));
    // The revoke committed although the call failed: the owner is out too.
    assert_eq!(version_of(&f.owner, stolen.jti).await?, None);
    assert!(matches!(
        f.svc.rotate(legit.token.expose_secret()).await,
        Err(Error::SessionNotFound)
    ));
    Ok(())
}

#[tokio::test]
async fn the_previous_token_within_grace_returns_the_current_token_without_rotating() -> TestResult
{
    let f = fixture(Config::default()).await?;
    let user = create_user(&f.owner, "retry@example.com").await?;
    let first = f.svc.issue(user, None, None).await?;
    let second = f.svc.rotate(first.token.expose_secret()).await?;
    let again = f.svc.rotate(first.token.expose_secret()).await?;
    assert_eq!(again, second);
    assert_eq!(version_of(&f.owner, first.jti).await?, Some(1));
    // Two versions back is reuse even inside the window.
    let third = f.svc.rotate(second.token.expose_secret()).await?;
    assert_eq!(third.refresh_version, 2);
    assert!(matches!(
        f.svc.rotate(first.token.expose_secret()).await,
        Err(Error::ReuseDetected)
    ));
    assert_eq!(version_of(&f.owner, first.jti).await?, None);
    Ok(())
}

#[tokio::test]
async fn the_previous_token_after_the_grace_window_is_reuse() -> TestResult {
    let config = Config {
        grace: Duration::from_millis(300),
        ..Config::default()
    };
    let f = fixture(config).await?;
    let user = create_user(&f.owner, "late@example.com").await?;
    let first = f.svc.issue(user, None, None).await?;
    f.svc.rotate(first.token.expose_secret()).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        f.svc.rotate(first.token.expose_secret()).await,
        Err(Error::ReuseDetected)
    ));
    assert_eq!(version_of(&f.owner, first.jti).await?, None);
    Ok(())
}

// --------------------------------------------------------------------- RLS

#[tokio::test]
async fn acting_as_user_b_never_sees_or_changes_user_a_sessions() -> TestResult {
    let f = fixture(strict()).await?;
    let a = create_user(&f.owner, "a@example.com").await?;
    let b = create_user(&f.owner, "b@example.com").await?;
    let a1 = f.svc.issue(a, Some("A phone"), Some("192.0.2.1")).await?;
    f.svc.issue(a, Some("A laptop"), None).await?;
    let b1 = f.svc.issue(b, Some("B phone"), None).await?;
    let before = rows(&f.owner).await?;

    let listed = f.svc.list(b).await?;
    assert_eq!(listed.iter().map(|s| s.jti).collect::<Vec<_>>(), [b1.jti]);
    assert!(!f.svc.revoke(b, SessionRef::Jti(a1.jti)).await?);
    assert!(
        !f.svc
            .revoke(b, SessionRef::Token(a1.token.expose_secret()))
            .await?
    );
    assert_eq!(rows(&f.owner).await?, before, "B changed A's rows");

    assert_eq!(f.svc.revoke_all(b).await?, 1);
    let after: Vec<_> = rows(&f.owner).await?;
    assert_eq!(after.len(), 2);
    assert_eq!(f.svc.list(a).await?.len(), 2, "A's sessions must survive");
    let a_list = f.svc.list(a).await?;
    assert_eq!(a_list[1].ip, Some("192.0.2.1".parse()?));
    assert_eq!(a_list[1].user_agent.as_deref(), Some("A phone"));

    assert!(f.svc.revoke(a, SessionRef::Jti(a1.jti)).await?);
    assert_eq!(f.svc.list(a).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_validly_signed_token_naming_user_b_with_user_a_jti_changes_nothing() -> TestResult {
    let f = fixture(strict()).await?;
    let a = create_user(&f.owner, "a@example.com").await?;
    let b = create_user(&f.owner, "b@example.com").await?;
    let a1 = f.svc.issue(a, None, None).await?;
    let before = rows(&f.owner).await?;

    // Every version, so neither the UPDATE nor the reuse DELETE could hit.
    for version in [0, 1, 5] {
        let forged = keys().sign(&Claims {
            user_id: b,
            jti: a1.jti,
            refresh_version: version,
            expires_at: a1.expires_at,
        });
        assert!(
            matches!(
                f.svc.rotate(forged.expose_secret()).await,
                Err(Error::SessionNotFound)
            ),
            "version {version}"
        );
    }
    assert_eq!(rows(&f.owner).await?, before);
    Ok(())
}

#[tokio::test]
async fn the_service_role_sees_no_session_without_an_acting_user() -> TestResult {
    let f = fixture(strict()).await?;
    let a = create_user(&f.owner, "a@example.com").await?;
    f.svc.issue(a, None, None).await?;
    let raw = f.db.connect_as("refresh_service").await?;
    let count = |sql: &'static str| {
        let raw = raw.clone();
        async move {
            let row = raw.query_one_raw(stmt(sql, vec![])).await?.expect("row");
            anyhow::Ok(row.try_get::<i64>("", "n")?)
        }
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM auth.refresh_session").await?,
        0
    );
    let deleted = raw
        .execute_raw(stmt("DELETE FROM auth.refresh_session", vec![]))
        .await?;
    assert_eq!(deleted.rows_affected(), 0);
    assert_eq!(rows(&f.owner).await?.len(), 1);
    // No privilege on users at all.
    assert!(
        raw.query_one_raw(stmt(r#"SELECT count(*) AS n FROM auth."user""#, vec![]))
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn the_maintenance_role_sees_every_session_and_purges_only_expired_ones_in_batches()
-> TestResult {
    let f = fixture(strict()).await?;
    let a = create_user(&f.owner, "a@example.com").await?;
    let b = create_user(&f.owner, "b@example.com").await?;
    for user in [a, a, a, b, b] {
        f.svc.issue(user, None, None).await?;
    }
    let maint_conn = f.db.connect_as("refresh_maintenance").await?;
    let all = maint_conn
        .query_one_raw(stmt(
            "SELECT count(*) AS n FROM auth.refresh_session",
            vec![],
        ))
        .await?
        .expect("row")
        .try_get::<i64>("", "n")?;
    assert_eq!(all, 5, "the admin policy shows every user's sessions");

    exec(
        &f.owner,
        "UPDATE auth.refresh_session SET expires_at = now() - interval '1 minute' \
         WHERE id IN (SELECT id FROM auth.refresh_session ORDER BY id LIMIT 4)",
        vec![],
    )
    .await?;
    let maintenance = Maintenance::new(maint_conn).await?;
    assert_eq!(
        maintenance
            .purge_expired(NonZeroU32::new(3).unwrap())
            .await?,
        4
    );
    assert_eq!(rows(&f.owner).await?.len(), 1);
    assert_eq!(
        maintenance
            .purge_expired(NonZeroU32::new(3).unwrap())
            .await?,
        0
    );
    Ok(())
}

#[tokio::test]
async fn handles_refuse_roles_that_would_bypass_the_own_row_policies() -> TestResult {
    let db = TestDb::new().await?;
    let owner = RefreshService::new(db.connect().await?, keys(), strict()).await;
    assert!(matches!(owner, Err(Error::UnsafeRole { .. })), "{owner:?}");
    let admin = RefreshService::new(
        db.connect_as("refresh_maintenance").await?,
        keys(),
        strict(),
    )
    .await;
    assert!(matches!(admin, Err(Error::UnsafeRole { .. })), "{admin:?}");
    let not_admin = Maintenance::new(db.connect_as("refresh_service").await?).await;
    assert!(
        matches!(not_admin, Err(Error::UnsafeRole { .. })),
        "{not_admin:?}"
    );
    Ok(())
}

// --------------------------------------------------------------- bad input

#[tokio::test]
async fn malformed_truncated_tampered_and_foreign_key_tokens_are_refused_and_change_nothing()
-> TestResult {
    let f = fixture(strict()).await?;
    let user = create_user(&f.owner, "a@example.com").await?;
    let issued = f.svc.issue(user, None, None).await?;
    let good = issued.token.expose_secret().to_owned();
    let before = rows(&f.owner).await?;

    let mut tampered = good.clone().into_bytes();
    let mid = good.len() / 3; // inside the payload
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    let other_key = Keyring::new(Key::new("other", [1u8; 32])?);
    let same_id_other_secret = Keyring::new(Key::new("test-1", [2u8; 32])?);
    let claims = Claims {
        user_id: user,
        jti: issued.jti,
        refresh_version: 0,
        expires_at: issued.expires_at,
    };
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("garbage", "not a token".into()),
        ("wrong version prefix", good.replacen("v1.", "v2.", 1)),
        ("truncated", good[..good.len() - 5].to_owned()),
        ("payload only", good[..good.rfind('.').unwrap()].to_owned()),
        ("oversized", good.repeat(10)),
        ("tampered", tampered),
        ("unknown key", other_key.sign(&claims).into_secret()),
        (
            "foreign secret",
            same_id_other_secret.sign(&claims).into_secret(),
        ),
    ];
    for (name, token) in cases {
        let result = f.svc.rotate(&token).await;
        let expected = match name {
            "unknown key" => TokenError::UnknownKey,
            "foreign secret" => TokenError::BadSignature,
            "tampered" => {
                assert!(
                    matches!(result, Err(Error::InvalidToken(_))),
                    "{name}: {result:?}"
                );
                continue;
            }
            _ => TokenError::Malformed,
        };
        assert!(
            matches!(result, Err(Error::InvalidToken(e)) if e == expected),
            "{name}: {result:?}"
        );
    }
    assert_eq!(rows(&f.owner).await?, before);
    // The real token still works: nothing was revoked by the garbage.
    f.svc.rotate(&good).await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_session_is_refused_and_left_for_purge() -> TestResult {
    let f = fixture(strict()).await?;
    let user = create_user(&f.owner, "a@example.com").await?;
    let issued = f.svc.issue(user, None, None).await?;
    exec(
        &f.owner,
        "UPDATE auth.refresh_session SET expires_at = now() - interval '1 second'",
        vec![],
    )
    .await?;
    let before = rows(&f.owner).await?;
    assert!(matches!(
        f.svc.rotate(issued.token.expose_secret()).await,
        Err(Error::Expired)
    ));
    assert_eq!(rows(&f.owner).await?, before);
    assert!(
        f.svc.list(user).await?.is_empty(),
        "expired sessions are not listed"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_whose_user_was_deleted_finds_no_session() -> TestResult {
    let f = fixture(strict()).await?;
    let gone = create_user(&f.owner, "gone@example.com").await?;
    let stays = create_user(&f.owner, "stays@example.com").await?;
    let issued = f.svc.issue(gone, None, None).await?;
    f.svc.issue(stays, None, None).await?;
    exec(
        &f.owner,
        r#"DELETE FROM auth."user" WHERE id = $1"#,
        vec![gone.into()],
    )
    .await?;
    let before = rows(&f.owner).await?;
    assert_eq!(before.len(), 1, "sessions cascade with their user");
    assert!(matches!(
        f.svc.rotate(issued.token.expose_secret()).await,
        Err(Error::SessionNotFound)
    ));
    assert!(matches!(
        f.svc.issue(gone, None, None).await,
        Err(Error::UserNotFound)
    ));
    assert_eq!(rows(&f.owner).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_session_at_i32_max_refuses_to_rotate_without_overflowing() -> TestResult {
    let f = fixture(strict()).await?;
    let user = create_user(&f.owner, "a@example.com").await?;
    let issued = f.svc.issue(user, None, None).await?;
    exec(
        &f.owner,
        "UPDATE auth.refresh_session SET refresh_version = 2147483647",
        vec![],
    )
    .await?;
    let before = rows(&f.owner).await?;
    let at_max = keys().sign(&Claims {
        user_id: user,
        jti: issued.jti,
        refresh_version: i32::MAX,
        expires_at: issued.expires_at,
    });
    assert!(matches!(
        f.svc.rotate(at_max.expose_secret()).await,
        Err(Error::VersionExhausted)
    ));
    assert_eq!(rows(&f.owner).await?, before);
    Ok(())
}

#[tokio::test]
async fn oversized_or_nul_user_agents_and_invalid_ips_are_refused_before_the_database() -> TestResult
{
    let f = fixture(strict()).await?;
    let user = create_user(&f.owner, "a@example.com").await?;
    let long = "x".repeat(service::MAX_USER_AGENT_LEN + 1);
    assert!(matches!(
        f.svc.issue(user, Some(&long), None).await,
        Err(Error::UserAgentTooLong { len: 513, max: 512 })
    ));
    assert!(matches!(
        f.svc.issue(user, Some("a\0b"), None).await,
        Err(Error::InvalidUserAgent)
    ));
    for ip in [
        "",
        "999.1.1.1",
        "1.2.3.4/24",
        "::g",
        "localhost",
        "1.2.3.4; DROP TABLE x",
    ] {
        assert!(
            matches!(
                f.svc.issue(user, None, Some(ip)).await,
                Err(Error::InvalidIp(_))
            ),
            "{ip:?}"
        );
    }
    assert!(matches!(
        f.svc.issue(999_999, None, None).await,
        Err(Error::UserNotFound)
    ));
    assert!(rows(&f.owner).await?.is_empty());
    // The limit itself is accepted.
    let max = "y".repeat(service::MAX_USER_AGENT_LEN);
    f.svc.issue(user, Some(&max), Some(" 10.0.0.1 ")).await?;
    let distinct: HashSet<_> = rows(&f.owner).await?.into_iter().collect();
    assert_eq!(distinct.len(), 1);
    Ok(())
}
