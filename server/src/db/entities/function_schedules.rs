//! `_function_schedules`: each schedule's newest claimed tick and its run in progress.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "_function_schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub function: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub cron: String,
    pub last_tick: DateTimeUtc,
    pub running_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
