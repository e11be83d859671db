//! Reads back what the migrations built, in two forms a reviewer can diff:
//!
//! - [`describe_table`]: psql 18's `\d+ auth.refresh_session`, byte for byte
//!   the format of the specification in `spec/`;
//! - [`snapshot`]: a deterministic text listing of everything `\d+` does not
//!   show (functions, `auth."user"`, roles, grants, RLS flags, identity
//!   options, comments).
//!
//! Both are plain text so that a migration's effect is visible in a plain
//! `git diff` of the snapshot files.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let db = sea_orm::Database::connect("postgres://postgres@127.0.0.1/app").await?;
//! println!("{}", schema_inspect::snapshot(&db).await?);
//! # Ok(()) }
//! ```

mod describe;

pub use describe::describe;

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The schema the migrations own; everything reported lives in it.
pub const SCHEMA: &str = "auth";

/// Why inspecting failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A catalog query failed.
    #[error("catalog query failed: {0}")]
    Query(#[from] DbErr),
    /// psql could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The psql binary that was tried.
        program: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// psql ran but reported an error.
    #[error("psql failed: {0}")]
    Psql(String),
    /// The table to describe does not exist.
    #[error("table {0} not found")]
    NotFound(String),
    /// The table uses a feature the Rust `\d+` renderer does not print.
    #[error("{0}")]
    Unsupported(String),
}

/// The table whose `\d+` is the specification.
pub const SPEC_TABLE: &str = "refresh_session";

/// Separates the `\d+` text from the snapshot in [`schema_text`].
pub const SNAPSHOT_HEADING: &str = "-- Everything else the migrations own (not shown by \\d+):\n\n";

/// What `migration schema describe` prints and `schema check` compares: psql
/// 18's `\d+ auth.refresh_session` (rendered by [`describe`], no psql needed),
/// then [`SNAPSHOT_HEADING`] and the [`snapshot`] of everything else.
pub async fn schema_text<C: ConnectionTrait>(db: &C) -> Result<String, InspectError> {
    Ok(join_schema_text(
        &describe(db, SCHEMA, SPEC_TABLE).await?,
        &snapshot(db).await?,
    ))
}

/// Joins a `\d+` text and a snapshot the way [`schema_text`] does, so the
/// committed expectation can be assembled from its two files.
pub fn join_schema_text(describe: &str, snapshot: &str) -> String {
    format!("{describe}\n{SNAPSHOT_HEADING}{snapshot}")
}

/// A unified diff (3 lines of context) from `expected` to `actual`, or `None`
/// when they are equal.
pub fn unified_diff(
    expected: &str,
    actual: &str,
    expected_name: &str,
    actual_name: &str,
) -> Option<String> {
    if expected == actual {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(expected, actual)
            .unified_diff()
            .context_radius(3)
            .header(expected_name, actual_name)
            .to_string(),
    )
}

/// Runs `psql -c '\d+ <table>'` and returns its output unchanged.
///
/// psql must be version 18: older clients neither print the "Not-null
/// constraints:" footer nor know the catalog columns PostgreSQL 18 added.
pub fn describe_table(
    psql: &Path,
    database_url: &str,
    table: &str,
) -> Result<String, InspectError> {
    let output = Command::new(psql)
        // -X: no ~/.psqlrc, which could change the format.
        .args(["-X", "--no-password", "-P", "pager=off", "-d", database_url])
        .arg("-c")
        .arg(format!("\\d+ {table}"))
        .env_remove("PSQLRC")
        .env("PGCLIENTENCODING", "UTF8")
        .output()
        .map_err(|source| InspectError::Spawn {
            program: psql.display().to_string(),
            source,
        })?;
    if !output.status.success() || !output.stderr.is_empty() {
        return Err(InspectError::Psql(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[derive(FromQueryResult)]
struct Line {
    line: String,
}

/// One section of the snapshot: a title and a query returning one text
/// column `line`, already ordered. `$1` is the schema name. Owner names
/// differ between servers (postgres, a container's user, a DATABASE_URL's
/// user), so the migrating role prints as `<owner>`.
struct Section {
    title: &'static str,
    sql: &'static str,
}

const SECTIONS: &[Section] = &[
    Section {
        title: "Schema",
        sql: "SELECT n.nspname || '  owner=' || coalesce(nullif(pg_get_userbyid(n.nspowner), current_user)::text, '<owner>') AS line
              FROM pg_namespace n WHERE n.nspname = $1",
    },
    Section {
        title: "Tables (row level security: enabled / forced)",
        sql: "SELECT format('%I.%I  owner=%s  rls=%s  force_rls=%s  kind=%s',
                            n.nspname, c.relname, coalesce(nullif(pg_get_userbyid(c.relowner), current_user)::text, '<owner>'),
                            c.relrowsecurity, c.relforcerowsecurity, c.relkind) AS line
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
              ORDER BY c.relname",
    },
    Section {
        title: "Columns",
        sql: "SELECT format('%I.%I.%I  %s%s%s%s%s',
                            n.nspname, c.relname, a.attname,
                            format_type(a.atttypid, a.atttypmod),
                            CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                            CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                               WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END,
                            CASE WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
                            CASE WHEN col_description(c.oid, a.attnum) IS NOT NULL
                                 THEN '  -- ' || col_description(c.oid, a.attnum) ELSE '' END) AS line
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY c.relname, a.attnum",
    },
    Section {
        title: "Identity sequences",
        sql: "SELECT format('%I.%I.%I  sequence=%s  start=%s increment=%s min=%s max=%s cache=%s cycle=%s',
                            n.nspname, c.relname, a.attname,
                            pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname),
                            s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle) AS line
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_sequence s ON s.seqrelid = pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname)::regclass
              WHERE n.nspname = $1 AND a.attidentity <> ''
              ORDER BY c.relname, a.attnum",
    },
    Section {
        title: "Constraints",
        sql: "SELECT format('%I.%I  %I  %s', n.nspname, c.relname, con.conname,
                            pg_get_constraintdef(con.oid)) AS line
              FROM pg_constraint con
              JOIN pg_class c ON c.oid = con.conrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1
              ORDER BY c.relname, con.conname",
    },
    Section {
        title: "Indexes",
        sql: "SELECT indexdef AS line FROM pg_indexes WHERE schemaname = $1
              ORDER BY tablename, indexname",
    },
    Section {
        title: "Policies",
        sql: "SELECT format('%I.%I  %I  %s FOR %s TO %s%s%s', schemaname, tablename, policyname,
                            permissive, cmd, array_to_string(roles, ','),
                            CASE WHEN qual IS NOT NULL THEN E'\\n    USING ' || qual ELSE '' END,
                            CASE WHEN with_check IS NOT NULL THEN E'\\n    WITH CHECK ' || with_check ELSE '' END) AS line
              FROM pg_policies WHERE schemaname = $1
              ORDER BY tablename, policyname",
    },
    Section {
        title: "Functions",
        sql: "SELECT format(E'%s  owner=%s  security=%s\\n%s%s',
                            p.oid::regprocedure, coalesce(nullif(pg_get_userbyid(p.proowner), current_user)::text, '<owner>'),
                            CASE WHEN p.prosecdef THEN 'definer' ELSE 'invoker' END,
                            rtrim(pg_get_functiondef(p.oid), E'\\n'),
                            CASE WHEN obj_description(p.oid, 'pg_proc') IS NOT NULL
                                 THEN E'\\n  -- ' || obj_description(p.oid, 'pg_proc') ELSE '' END) AS line
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1
              ORDER BY p.oid::regprocedure::text",
    },
    Section {
        title: "Grants (owner's own privileges omitted)",
        sql: "WITH objects AS (
                  SELECT 'schema' AS kind, n.nspname::text AS name, n.nspacl AS acl, n.nspowner AS owner
                  FROM pg_namespace n WHERE n.nspname = $1
                  UNION ALL
                  SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END,
                         format('%I.%I', n.nspname, c.relname), c.relacl, c.relowner
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                  UNION ALL
                  SELECT 'function', p.oid::regprocedure::text, p.proacl, p.proowner
                  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = $1
              )
              SELECT format('%s %s  to %s: %s', o.kind, o.name,
                            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee)::text END,
                            string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type)) AS line
              FROM objects o
              CROSS JOIN LATERAL aclexplode(coalesce(o.acl, acldefault(
                  CASE o.kind WHEN 'schema' THEN 'n' WHEN 'sequence' THEN 's'
                              WHEN 'function' THEN 'f' ELSE 'r' END::\"char\", o.owner))) g
              WHERE g.grantee <> o.owner
              GROUP BY o.kind, o.name, g.grantee
              ORDER BY 1",
    },
    Section {
        title: "Roles (granted something here, or members of such a role)",
        sql: "WITH RECURSIVE granted AS (
                  SELECT DISTINCT g.grantee AS oid
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  CROSS JOIN LATERAL aclexplode(c.relacl) g
                  WHERE n.nspname = $1 AND g.grantee <> 0 AND g.grantee <> c.relowner
                  UNION
                  SELECT m.member FROM pg_auth_members m JOIN granted ON m.roleid = granted.oid
              )
              SELECT format('%s  login=%s superuser=%s inherit=%s createrole=%s createdb=%s bypassrls=%s replication=%s member_of=%s',
                            r.rolname, r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole,
                            r.rolcreatedb, r.rolbypassrls, r.rolreplication,
                            coalesce((SELECT string_agg(p.rolname, ',' ORDER BY p.rolname)
                                      FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid
                                      WHERE m.member = r.oid), '-')) AS line
              FROM pg_roles r JOIN granted ON granted.oid = r.oid
              WHERE r.rolname <> current_user
              ORDER BY r.rolname",
    },
];

/// A deterministic listing of everything in the `auth` schema that `\d+`
/// does not show, one section per kind of object.
pub async fn snapshot<C: ConnectionTrait>(db: &C) -> Result<String, InspectError> {
    let mut out = String::new();
    for (index, section) in SECTIONS.iter().enumerate() {
        if index > 0 {
            out.push('\n'); // a blank line between sections, none at the end
        }
        let rows = Line::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            section.sql,
            [SCHEMA.into()],
        ))
        .all(db)
        .await?;
        let _ = writeln!(out, "## {}", section.title);
        if rows.is_empty() {
            out.push_str("(none)\n");
        }
        for row in rows {
            let _ = writeln!(out, "{}", row.line);
        }
    }
    Ok(out)
}
