//! Collections: their definitions, how a definition is validated, and (next) how a
//! change is planned as DDL and applied. The registry of the current schema lives
//! here too. Imports `db`, `config` and `validation`.

pub mod ddl;
pub mod index;
pub mod model;
pub mod names;
pub mod registry;
pub mod service;

pub use crate::validation::FieldErrors;
pub use model::{Collection, CollectionKind, Field, FieldKind, Rules};
pub use registry::Snapshot;
pub use service::{Actor, RuleCheck, SchemaError, SchemaService};
