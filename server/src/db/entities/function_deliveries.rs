//! `_function_deliveries`: after-event calls waiting for a retry, and dead letters.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_function_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub function: String,
    /// The CloudEvent id.
    pub event_id: String,
    /// `{collection}.{action}`.
    pub trigger: String,
    /// The CloudEvent, JSON.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// `attempts` when it was last replayed (its new budget counts from there).
    pub replayed: i32,
    /// `retry` or `dead`.
    pub state: String,
    pub due: DateTimeUtc,
    pub error: Option<String>,
    pub created: DateTimeUtc,
    pub updated: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
