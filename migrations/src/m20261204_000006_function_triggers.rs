//! After-event triggers and schedules: `_function_cursors` (where each function's
//! trigger is in the outbox, when no broker carries events, with a lease so one
//! instance delivers them), `_function_deliveries` (events waiting for a retry, and
//! dead letters) and `_function_schedules` (each schedule's last tick, claimed by one
//! instance, and whether a run is still going).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Cursors {
    #[sea_orm(iden = "_function_cursors")]
    Table,
    Function,
    /// Every outbox row up to this `seq` has been handed to the function.
    Seq,
    /// The instance delivering, and until when it may.
    Owner,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Deliveries {
    #[sea_orm(iden = "_function_deliveries")]
    Table,
    Id,
    Function,
    /// The CloudEvent id.
    EventId,
    /// `{collection}.{action}`.
    Trigger,
    /// The CloudEvent, JSON.
    Payload,
    /// Attempts made so far.
    Attempts,
    /// `attempts` at the last replay.
    Replayed,
    /// `retry` (waiting for `due`) or `dead`.
    State,
    Due,
    Error,
    Created,
    Updated,
}

#[derive(DeriveIden)]
enum Schedules {
    #[sea_orm(iden = "_function_schedules")]
    Table,
    Function,
    Cron,
    /// The newest tick claimed (run or skipped).
    LastTick,
    /// A run in progress may last until then; later, it is taken for dead.
    RunningUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Cursors::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Cursors::Function)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Cursors::Seq).big_integer().not_null())
                    .col(ColumnDef::new(Cursors::Owner).text().null())
                    .col(
                        ColumnDef::new(Cursors::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Deliveries::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Deliveries::Function).text().not_null())
                    .col(ColumnDef::new(Deliveries::EventId).text().not_null())
                    .col(ColumnDef::new(Deliveries::Trigger).text().not_null())
                    .col(ColumnDef::new(Deliveries::Payload).text().not_null())
                    .col(ColumnDef::new(Deliveries::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(Deliveries::Replayed)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Deliveries::State).text().not_null())
                    .col(
                        ColumnDef::new(Deliveries::Due)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::Error).text().null())
                    .col(
                        ColumnDef::new(Deliveries::Created)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::Updated)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("_function_deliveries_state_due")
                    .table(Deliveries::Table)
                    .col(Deliveries::State)
                    .col(Deliveries::Due)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Schedules::Function)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Schedules::Cron).string_len(200).not_null())
                    .col(
                        ColumnDef::new(Schedules::LastTick)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Schedules::RunningUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(Schedules::Function)
                            .col(Schedules::Cron),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Schedules::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Cursors::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
