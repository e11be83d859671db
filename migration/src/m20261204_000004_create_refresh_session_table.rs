//! `auth.refresh_session` with its constraints and indexes, as in the spec.

use crate::change::pg;
use crate::{Auth, Change, RefreshSession, User};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000004_create_refresh_session_table"
    }

    fn up(&self) -> Vec<String> {
        let table = Table::create()
            .table((Auth::Schema, RefreshSession::Table))
            .col(
                ColumnDef::new(RefreshSession::Id)
                    .integer()
                    .not_null()
                    .extra("GENERATED ALWAYS AS IDENTITY")
                    .primary_key(),
            )
            .col(
                ColumnDef::new(RefreshSession::Jti)
                    .uuid()
                    .not_null()
                    .default(Expr::cust("uuidv7()")),
            )
            .col(ColumnDef::new(RefreshSession::UserId).integer().not_null())
            .col(
                ColumnDef::new(RefreshSession::RefreshVersion)
                    .integer()
                    .not_null()
                    .default(0),
            )
            .col(
                ColumnDef::new(RefreshSession::CreatedAt)
                    .timestamp_with_time_zone()
                    .not_null()
                    // Expr::current_timestamp() would be stored as CURRENT_TIMESTAMP;
                    // the spec says now().
                    .default(Expr::cust("now()")),
            )
            .col(
                ColumnDef::new(RefreshSession::LastUsedAt)
                    .timestamp_with_time_zone()
                    .not_null()
                    .default(Expr::cust("now()")),
            )
            .col(
                ColumnDef::new(RefreshSession::ExpiresAt)
                    .timestamp_with_time_zone()
                    .not_null(),
            )
            .col(ColumnDef::new(RefreshSession::UserAgent).text())
            .col(ColumnDef::new(RefreshSession::IpAddress).inet())
            // A named table constraint, not a bare unique index: the spec lists
            // it as "UNIQUE CONSTRAINT".
            .index(
                Index::create()
                    .name("refresh_session_jti_key")
                    .unique()
                    .col(RefreshSession::Jti),
            )
            .foreign_key(
                ForeignKey::create()
                    .name("refresh_session_user_id_fkey")
                    .from_col(RefreshSession::UserId)
                    .to((Auth::Schema, User::Table), User::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();

        let by_user = Index::create()
            .name("refresh_session_user_id_idx")
            .table((Auth::Schema, RefreshSession::Table))
            .col(RefreshSession::UserId)
            .to_owned();
        let by_expiry = Index::create()
            .name("refresh_session_expires_at_idx")
            .table((Auth::Schema, RefreshSession::Table))
            .col(RefreshSession::ExpiresAt)
            .to_owned();

        vec![pg(&table), pg(&by_user), pg(&by_expiry)]
    }

    fn down(&self) -> Vec<String> {
        // The indexes and constraints go with the table.
        vec![pg(
            Table::drop().table((Auth::Schema, RefreshSession::Table))
        )]
    }
}
