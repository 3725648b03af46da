//! `_schema_history`: one row per committed schema change.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_schema_history")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub collection_id: String,
    pub collection_name: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// Who made the change (`superuser:<id>`, `cli`, `system`); `None` if unknown.
    pub actor: Option<String>,
    /// `{"before": …, "after": …}`, each a collection definition or null.
    pub diff: String,
    pub created: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
