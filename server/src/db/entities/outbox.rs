//! `_outbox`: record changes waiting to be published (and, for a while, those sent).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// The CloudEvent id (UUIDv7).
    pub id: String,
    pub collection: String,
    /// `created`, `updated` or `deleted`.
    pub action: String,
    /// The CloudEvent, JSON.
    pub payload: String,
    /// The record's hidden field values (JSON object), for in-process use only: never
    /// published. Password hashes and token keys are never stored here.
    pub hidden: Option<String>,
    pub created: DateTimeUtc,
    pub sent: Option<DateTimeUtc>,
    pub attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
