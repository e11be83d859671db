//! Generates the `entity` crate's sources from a migrated PostgreSQL database
//! with SeaORM's own codegen, so the entities are derived from the schema and
//! never written by hand.
//!
//! The pipeline is the one `sea-orm-cli generate entity` runs, in-process:
//! `sea-schema` discovers schema [`SCHEMA`], each table is written back as a
//! `CREATE TABLE` statement, `sea-orm-codegen` transforms those into entities
//! and writes the files. The files are then formatted with `prettyplease`
//! (deterministic, no toolchain component needed) instead of `rustfmt`.
//!
//! ```no_run
//! # async fn run() -> Result<(), codegen::CodegenError> {
//! let url = "postgres://postgres@127.0.0.1:5432/scratch";
//! codegen::migrate(url).await?; // the database must be empty or migrated
//! let files = codegen::generate(url).await?;
//! let committed = codegen::read_entity_src(&codegen::entity_src_dir())?;
//! if let Some(diff) = codegen::diff(&committed, &files) {
//!     eprintln!("entity/ is out of date: run {}\n{diff}", codegen::REGENERATE_COMMAND);
//! }
//! # Ok(()) }
//! ```
//!
//! Invariant: the output depends only on the database schema and the locked
//! versions of sea-orm-codegen and prettyplease: no timestamps, no paths, and
//! tables and files in a fixed order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use migration::MigratorTrait as _;
use sea_orm_codegen::{
    BannerVersion, BigIntegerType, DateTimeCrate, EntityFormat, EntityTransformer,
    EntityWriterContext, WithPrelude, WithSerde,
};
use sea_schema::postgres::discovery::SchemaDiscovery;
use sea_schema::sqlx_types::postgres::PgPoolOptions;

/// The PostgreSQL schema whose tables become entities.
pub const SCHEMA: &str = "auth";

/// The command that regenerates `entity/src`; error messages name it.
pub const REGENERATE_COMMAND: &str = "cargo run -p codegen";

/// sea-orm-migration's bookkeeping table: never an entity, whatever schema it
/// ends up in.
const MIGRATIONS_TABLE: &str = "seaql_migrations";

/// The `entity` crate's documentation, placed in the generated `lib.rs` right
/// after the codegen banner so that the whole `entity/src` is generated.
const ENTITY_CRATE_DOC: &str = include_str!("entity_crate_doc.md");

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sea_schema::sqlx_types::Error),
    /// Reading the catalog failed.
    #[error("discovering schema `{SCHEMA}` failed: {0}")]
    Discover(#[source] sea_schema::sqlx_types::Error),
    /// The schema has no tables: the database was not migrated.
    #[error("schema `{SCHEMA}` has no tables: run the migrations first (codegen::migrate)")]
    NoTables,
    /// Running the migrations failed.
    #[error("migrating the database failed: {0}")]
    Migrate(#[source] sea_orm::DbErr),
    /// sea-orm-codegen refused the discovered tables.
    #[error("sea-orm-codegen could not transform the schema: {0}")]
    Transform(#[source] sea_orm_codegen::Error),
    /// sea-orm-codegen wrote something that is not Rust (a codegen bug).
    #[error("sea-orm-codegen wrote {file}, which does not parse as Rust: {source}")]
    Parse {
        /// The generated file's name.
        file: String,
        /// Where and why parsing failed.
        source: syn::Error,
    },
    /// Reading or writing `entity/src` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Applies every pending migration to `database_url`: an empty database is
/// migrated, an already migrated one is left as it is.
pub async fn migrate(database_url: &str) -> Result<(), CodegenError> {
    let db = sea_orm::Database::connect(database_url)
        .await
        .map_err(CodegenError::Migrate)?;
    let result = migration::Migrator::up(&db, None).await;
    let closed = db.close().await;
    result.and(closed).map_err(CodegenError::Migrate)
}

/// The writer settings: those of `sea-orm-cli generate entity` with
/// `--lib --date-time-crate chrono --with-serde none --banner-version patch`
/// and the schema name kept in every entity.
fn writer_context() -> EntityWriterContext {
    EntityWriterContext::new(
        EntityFormat::Compact,
        WithPrelude::All,
        WithSerde::None,
        false, // with_copy_enums
        DateTimeCrate::Chrono,
        BigIntegerType::I64,
        Some(SCHEMA.to_owned()),
        true,  // lib: the index file is entity/src/lib.rs
        false, // serde_skip_deserializing_primary_key
        false, // serde_skip_hidden_column
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        false, // seaography
        true,  // impl_active_model_behavior
        BannerVersion::Patch,
    )
}

/// Generates the files of `entity/src` from the tables of schema [`SCHEMA`]
/// in the (migrated) database at `database_url`.
///
/// Keys are paths relative to `entity/src`; values are formatted Rust, each
/// starting with sea-orm-codegen's `@generated` banner.
pub async fn generate(database_url: &str) -> Result<BTreeMap<PathBuf, String>, CodegenError> {
    let search_path = format!("SET search_path = '{SCHEMA}'");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        // As sea-orm-cli does: names resolve in the discovered schema.
        .after_connect(move |conn, _| {
            let sql = search_path.clone();
            Box::pin(async move {
                sea_schema::sqlx_types::Executor::execute(
                    conn,
                    sea_schema::sqlx_types::AssertSqlSafe(sql),
                )
                .await
                .map(|_| ())
            })
        })
        .connect(database_url)
        .await
        .map_err(CodegenError::Connect)?;
    let discovered = SchemaDiscovery::new(pool.clone(), SCHEMA).discover().await;
    pool.close().await;
    let mut tables = discovered.map_err(CodegenError::Discover)?.tables;

    tables.retain(|table| table.info.name != MIGRATIONS_TABLE);
    // Catalog order is not guaranteed; the output must be.
    tables.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    if tables.is_empty() {
        return Err(CodegenError::NoTables);
    }
    let statements = tables
        .into_iter()
        .map(|mut table| {
            // As sea-orm-cli does: generated columns cannot be written, and
            // codegen does not support partial unique indexes.
            table.columns.retain(|column| column.generated.is_none());
            table
                .unique_constraints
                .retain(|constraint| !constraint.is_partial);
            table.write()
        })
        .collect();

    let writer = EntityTransformer::transform(statements).map_err(CodegenError::Transform)?;
    writer
        .generate(&writer_context())
        .files
        .into_iter()
        .map(|file| {
            let index_file = file.name == "lib.rs";
            let source = if index_file {
                with_crate_doc(&file.content)
            } else {
                file.content
            };
            let formatted =
                format_rust(&source, index_file).map_err(|source| CodegenError::Parse {
                    file: file.name.clone(),
                    source,
                })?;
            Ok((PathBuf::from(file.name), formatted))
        })
        .collect()
}

/// Inserts [`ENTITY_CRATE_DOC`] as inner doc comments after the first line
/// (the codegen banner), which stays the first line of the file.
fn with_crate_doc(index_file: &str) -> String {
    let (banner, rest) = index_file.split_once('\n').unwrap_or((index_file, ""));
    let mut out = String::with_capacity(index_file.len() + ENTITY_CRATE_DOC.len() * 2);
    out.push_str(banner);
    out.push_str("\n//!\n");
    for line in ENTITY_CRATE_DOC.lines() {
        if line.is_empty() {
            out.push_str("//!\n");
        } else {
            let _ = writeln!(out, "//! {line}");
        }
    }
    out.push_str(rest);
    out
}

/// Parses and pretty-prints one file: the same input always gives the same
/// output, whatever rustfmt is (or is not) installed.
///
/// prettyplease drops blank lines; one is put back between items, except
/// within a run of `use` or of `mod` declarations, as rustfmt would keep them.
/// In the index file every `mod` gets `#[rustfmt::skip]`: `cargo fmt` then
/// leaves the generated modules as prettyplease printed them, so formatting
/// the workspace never makes them drift (rustfmt's trailing-comma rules in
/// attributes differ from prettyplease's).
fn format_rust(source: &str, index_file: bool) -> Result<String, syn::Error> {
    let file = syn::parse_file(source)?;
    let mut out = prettyplease::unparse(&syn::File {
        shebang: file.shebang,
        attrs: file.attrs,
        items: Vec::new(),
    });
    let mut previous: Option<std::mem::Discriminant<syn::Item>> = None;
    for mut item in file.items {
        let kind = std::mem::discriminant(&item);
        let grouped = matches!(item, syn::Item::Use(_) | syn::Item::Mod(_));
        let first_after_header = previous.is_none() && !out.is_empty();
        if first_after_header || previous.is_some() && !(grouped && previous == Some(kind)) {
            out.push('\n');
        }
        if let (true, syn::Item::Mod(module)) = (index_file, &mut item) {
            module.attrs.push(syn::parse_quote!(#[rustfmt::skip]));
        }
        out.push_str(&prettyplease::unparse(&syn::File {
            shebang: None,
            attrs: Vec::new(),
            items: vec![item],
        }));
        previous = Some(kind);
    }
    Ok(out)
}

/// The committed `entity/src` directory of this workspace.
pub fn entity_src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("entity")
        .join("src")
}

/// Reads every file directly in `dir` (the generator writes no
/// subdirectories), keyed like [`generate`]'s output.
pub fn read_entity_src(dir: &Path) -> Result<BTreeMap<PathBuf, String>, CodegenError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CodegenError::Io { path, source }
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() {
            let content = std::fs::read_to_string(&path).map_err(io(&path))?;
            let name = path.file_name().map(PathBuf::from).unwrap_or_default();
            files.insert(name, content);
        }
    }
    Ok(files)
}

/// Makes `dir` hold exactly `files`: writes the ones that changed and removes
/// any other file (a dropped table's entity must not linger).
pub fn write_entity_src(dir: &Path, files: &BTreeMap<PathBuf, String>) -> Result<(), CodegenError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CodegenError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let existing = read_entity_src(dir)?;
    for name in existing.keys().filter(|name| !files.contains_key(*name)) {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    for (name, content) in files {
        if existing.get(name) != Some(content) {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// A unified diff from `committed` to `generated`, or `None` when they are
/// identical byte for byte. Missing and extra files show as whole-file diffs.
pub fn diff(
    committed: &BTreeMap<PathBuf, String>,
    generated: &BTreeMap<PathBuf, String>,
) -> Option<String> {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&PathBuf> =
        committed.keys().chain(generated.keys()).collect();
    for name in names {
        let label = Path::new("entity/src").join(name);
        let (old_label, old) = match committed.get(name) {
            Some(content) => (format!("a/{} (committed)", label.display()), content),
            None => {
                let _ = writeln!(out, "not committed: {}", label.display());
                ("/dev/null".to_owned(), &String::new())
            }
        };
        let (new_label, new) = match generated.get(name) {
            Some(content) => (format!("b/{} (generated)", label.display()), content),
            None => {
                let _ = writeln!(out, "not generated: {}", label.display());
                ("/dev/null".to_owned(), &String::new())
            }
        };
        if old != new {
            let _ = write!(
                out,
                "{}",
                similar::TextDiff::from_lines(old.as_str(), new.as_str())
                    .unified_diff()
                    .context_radius(3)
                    .header(&old_label, &new_label)
            );
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn crate_doc_goes_after_the_banner() {
        let source = "//! `SeaORM` Entity, @generated by sea-orm-codegen 2.0.4\n\npub mod user;";
        let formatted = format_rust(&with_crate_doc(source), true).unwrap();
        let first_line = formatted.lines().next().unwrap();
        assert_eq!(
            first_line,
            "//! `SeaORM` Entity, @generated by sea-orm-codegen 2.0.4"
        );
        assert!(formatted.contains("Never edit a file"), "{formatted}");
        assert!(
            formatted.ends_with(".\n\n#[rustfmt::skip]\npub mod user;\n"),
            "{formatted}"
        );
    }

    #[test]
    fn identical_trees_have_no_diff() {
        let files = BTreeMap::from([(PathBuf::from("user.rs"), "a\n".to_owned())]);
        assert_eq!(diff(&files, &files), None);
    }

    #[test]
    fn a_changed_line_shows_as_a_unified_diff() {
        let committed = BTreeMap::from([(PathBuf::from("user.rs"), "a\nb\n".to_owned())]);
        let generated = BTreeMap::from([(PathBuf::from("user.rs"), "a\nc\n".to_owned())]);
        let diff = diff(&committed, &generated).unwrap();
        assert!(
            diff.contains("--- a/entity/src/user.rs (committed)"),
            "{diff}"
        );
        assert!(diff.contains("-b\n+c\n"), "{diff}");
    }

    #[test]
    fn missing_and_extra_files_count_as_drift() {
        let committed = BTreeMap::from([(PathBuf::from("old.rs"), String::new())]);
        let generated = BTreeMap::from([(PathBuf::from("new.rs"), "x\n".to_owned())]);
        let diff = diff(&committed, &generated).unwrap();
        assert!(
            diff.contains("+++ b/entity/src/new.rs (generated)"),
            "{diff}"
        );
        // An empty extra file has no lines to diff but still must not pass.
        assert!(diff.contains("not generated: entity/src/old.rs"), "{diff}");
    }
}
