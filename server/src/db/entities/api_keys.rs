//! `_api_keys`: service accounts. Only a hash of each secret is kept.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// JSON: `"superuser"` or `[{"collection": …, "operations": […]}]`.
    pub scopes: String,
    pub expires: Option<DateTimeUtc>,
    pub revoked: Option<DateTimeUtc>,
    pub last_used: Option<DateTimeUtc>,
    pub created: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
