//! Basalt's own system tables (names start with `_`), as sea-orm-migration migrations.
//!
//! An applied migration is never edited: change a table by adding a migration. User
//! collections are not here; the `schema` module builds those at run time.

use sea_orm_migration::prelude::*;

mod m20261123_000001_settings;
mod m20261123_000002_collections;
mod m20261123_000003_auth;
mod m20261123_000004_outbox;
mod m20261203_000005_functions;
mod m20261204_000006_function_triggers;

pub use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Applies the system migrations in order.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_settings::Migration),
            Box::new(m20261123_000002_collections::Migration),
            Box::new(m20261123_000003_auth::Migration),
            Box::new(m20261123_000004_outbox::Migration),
            Box::new(m20261203_000005_functions::Migration),
            Box::new(m20261204_000006_function_triggers::Migration),
        ]
    }

    /// Keep sea-orm's bookkeeping table beside Basalt's own, with the same prefix.
    fn migration_table_name() -> DynIden {
        "_migrations".into_iden()
    }
}
