//! sea-orm entities for Basalt's own tables. The tables themselves are created by the
//! `basalt-migrations` crate; an entity here must match the latest migration.

pub mod api_keys;
pub mod collections;
pub mod external_auths;
pub mod function_cursors;
pub mod function_deliveries;
pub mod function_schedules;
pub mod functions;
pub mod invocations;
pub mod mails;
pub mod outbox;
pub mod schema_history;
pub mod settings;
