//! The `entity` crate against the migrated schema: it is exactly what the
//! codegen produces from it, and it round-trips through a real PostgreSQL 18.

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use entity::prelude::*;
use entity::{refresh_session, user};
use sea_orm::prelude::IpNetwork;
use sea_orm::{ActiveModelTrait, EntityTrait, ModelTrait, Set};

use tests::TestDb;

/// The whole of `entity/src`, regenerated from the test's migrated database.
async fn regenerate(db: &TestDb) -> Result<std::collections::BTreeMap<std::path::PathBuf, String>> {
    codegen::generate(&db.url())
        .await
        .context("regenerating the entities")
}

#[tokio::test]
async fn committed_entities_are_exactly_what_the_codegen_makes_of_the_migrated_schema() -> Result<()>
{
    let db = TestDb::new().await?;
    let generated = regenerate(&db).await?;
    let committed = codegen::read_entity_src(&codegen::entity_src_dir())?;

    if let Some(diff) = codegen::diff(&committed, &generated) {
        let fix = format!(
            "entity/ is out of date: run {}",
            codegen::REGENERATE_COMMAND
        );
        panic!("{fix}\n\n{diff}\n{fix}");
    }
    Ok(())
}

#[tokio::test]
async fn generated_entity_code_is_snapshotted_for_review() -> Result<()> {
    let db = TestDb::new().await?;
    let generated = regenerate(&db).await?;

    let mut combined = String::new();
    for (path, content) in &generated {
        combined.push_str(&format!("// ===== entity/src/{} =====\n", path.display()));
        combined.push_str(content);
        combined.push('\n');
    }
    insta::assert_snapshot!("generated_entity_src", combined);
    Ok(())
}

/// Now, at the microsecond precision of `timestamptz`.
fn now_in_microseconds() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("in range")
}

#[tokio::test]
async fn a_session_round_trips_with_database_defaults_and_goes_with_its_user() -> Result<()> {
    let db = TestDb::new().await?;
    // The owner: row level security does not apply to it.
    let conn = db.connect().await?;

    let user = user::ActiveModel {
        email: Set("ada@example.com".to_owned()),
        ..Default::default()
    }
    .insert(&conn)
    .await?;

    let expires_at = (now_in_microseconds() + Duration::days(30)).fixed_offset();
    let ip: IpNetwork = "203.0.113.7/32".parse()?;
    // id, jti, refresh_version, created_at and last_used_at are left unset.
    let session = refresh_session::ActiveModel {
        user_id: Set(user.id),
        expires_at: Set(expires_at),
        user_agent: Set(Some("entity-test/1.0".to_owned())),
        ip_address: Set(Some(ip)),
        ..Default::default()
    }
    .insert(&conn)
    .await?;

    assert_eq!(session.user_id, user.id);
    assert_eq!(
        session.jti.get_version_num(),
        7,
        "jti {} is not a UUIDv7",
        session.jti
    );
    assert_eq!(session.refresh_version, 0);
    // Both default to now(), the transaction's start time.
    assert_eq!(session.created_at, session.last_used_at);
    assert_eq!(session.expires_at, expires_at);
    assert_eq!(session.user_agent.as_deref(), Some("entity-test/1.0"));
    assert_eq!(session.ip_address, Some(ip));

    let read_back = RefreshSession::find_by_id(session.id).one(&conn).await?;
    assert_eq!(read_back.as_ref(), Some(&session));
    assert_eq!(
        User::find_by_id(user.id).one(&conn).await?.as_ref(),
        Some(&user)
    );

    // The relations, both ways.
    assert_eq!(
        user.find_related(RefreshSession).all(&conn).await?,
        vec![session.clone()]
    );
    assert_eq!(
        session.find_related(User).one(&conn).await?,
        Some(user.clone())
    );

    // ON DELETE CASCADE: the session goes with its user.
    user.delete(&conn).await?;
    assert_eq!(
        RefreshSession::find_by_id(session.id).one(&conn).await?,
        None
    );
    Ok(())
}
