//! `migration`: apply, inspect and preview the auth.refresh_session migrations.
//!
//! `cargo run -p migration -- up` with `DATABASE_URL` (or `-u`) set works
//! like sea-orm-migration's CLI; `preview` needs nothing configured.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
