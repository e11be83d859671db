//! SeaORM entities for `auth.refresh_session`, generated from the migrated
//! database. Filled in by the entity-generation work; empty until then.
