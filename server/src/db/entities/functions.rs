//! `_functions`: every deployed version of every function (history kept).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_functions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub version: i32,
    /// JSON: the manifest (triggers, scopes, limits).
    pub manifest: String,
    /// The component as uploaded.
    pub component: Vec<u8>,
    /// SHA-256 of the component, hex.
    pub digest: String,
    pub enabled: bool,
    /// Set on a name's newest row when the function was deleted.
    pub deleted: Option<DateTimeUtc>,
    pub created: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
