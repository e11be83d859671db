//! A minimal `auth."user"`: what refresh sessions belong to.

use crate::change::pg;
use crate::{Auth, Change, User};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl Change for Migration {
    fn name(&self) -> &'static str {
        "m20261204_000002_create_user_table"
    }

    fn up(&self) -> Vec<String> {
        let table = Table::create()
            .table((Auth::Schema, User::Table))
            .col(
                ColumnDef::new(User::Id)
                    .integer()
                    .not_null()
                    // sea-query's auto_increment() means BY DEFAULT; the
                    // spec's tables use ALWAYS so ids cannot be chosen by callers.
                    .extra("GENERATED ALWAYS AS IDENTITY")
                    .primary_key(),
            )
            .col(ColumnDef::new(User::Email).text().not_null())
            .col(
                ColumnDef::new(User::CreatedAt)
                    .timestamp_with_time_zone()
                    .not_null()
                    .default(Expr::cust("now()")),
            )
            .index(
                Index::create()
                    .name("user_email_key")
                    .unique()
                    .col(User::Email),
            )
            .to_owned();
        vec![pg(&table)]
    }

    fn down(&self) -> Vec<String> {
        vec![pg(Table::drop().table((Auth::Schema, User::Table)))]
    }
}
