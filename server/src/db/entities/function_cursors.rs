//! `_function_cursors`: where a function's after-event trigger is in the outbox (the
//! path without a broker), and which instance delivers it until when.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_function_cursors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub function: String,
    /// Every outbox row up to this `seq` has been handed to the function.
    pub seq: i64,
    pub owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
