//! WASM functions: `_functions` (every deployed version, history kept: the newest
//! row of a name is the live one unless it is marked deleted) and `_invocations`
//! (one row per call, pruned after a retention time).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Functions {
    #[sea_orm(iden = "_functions")]
    Table,
    Id,
    Name,
    Version,
    /// JSON: triggers, scopes, limits.
    Manifest,
    /// The component as uploaded.
    Component,
    /// SHA-256 of the component, hex: the compiled cache's key.
    Digest,
    Enabled,
    /// Set on the newest row when the function was deleted.
    Deleted,
    Created,
}

#[derive(DeriveIden)]
enum Invocations {
    #[sea_orm(iden = "_invocations")]
    Table,
    Id,
    Function,
    Version,
    Trigger,
    Started,
    DurationUs,
    /// `ok`, `rejected`, `error`, `timeout`.
    Outcome,
    Error,
    /// JSON list of captured log lines (bounded).
    Logs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Functions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Functions::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Functions::Name).text().not_null())
                    .col(ColumnDef::new(Functions::Version).integer().not_null())
                    .col(ColumnDef::new(Functions::Manifest).text().not_null())
                    .col(ColumnDef::new(Functions::Component).blob().not_null())
                    .col(ColumnDef::new(Functions::Digest).text().not_null())
                    .col(ColumnDef::new(Functions::Enabled).boolean().not_null())
                    .col(
                        ColumnDef::new(Functions::Deleted)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Functions::Created)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("_functions_name_version")
                    .table(Functions::Table)
                    .col(Functions::Name)
                    .col(Functions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invocations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Invocations::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Invocations::Function).text().not_null())
                    .col(ColumnDef::new(Invocations::Version).integer().not_null())
                    .col(ColumnDef::new(Invocations::Trigger).text().not_null())
                    .col(
                        ColumnDef::new(Invocations::Started)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Invocations::DurationUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Invocations::Outcome).text().not_null())
                    .col(ColumnDef::new(Invocations::Error).text().null())
                    .col(ColumnDef::new(Invocations::Logs).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("_invocations_function_started")
                    .table(Invocations::Table)
                    .col(Invocations::Function)
                    .col(Invocations::Started)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("_invocations_started")
                    .table(Invocations::Table)
                    .col(Invocations::Started)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Invocations::Table.into_iden(), Functions::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
