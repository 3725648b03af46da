//! `_invocations`: one row per function call.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_invocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub function: String,
    pub version: i32,
    /// `http`, `before-create:posts`, …
    pub trigger: String,
    pub started: DateTimeUtc,
    pub duration_us: i64,
    /// `ok`, `rejected`, `error`, `timeout`.
    pub outcome: String,
    pub error: Option<String>,
    /// JSON list of `{level, message, fields}` (bounded).
    pub logs: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
