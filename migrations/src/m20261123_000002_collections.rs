//! `_collections` (every collection's definition, system ones included) and
//! `_schema_history` (every committed schema change: who, when, the diff).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Collections {
    #[sea_orm(iden = "_collections")]
    Table,
    Id,
    Name,
    Type,
    System,
    Fields,
    Indexes,
    ListRule,
    ViewRule,
    CreateRule,
    UpdateRule,
    DeleteRule,
    Options,
    Created,
    Updated,
}

#[derive(DeriveIden)]
enum SchemaHistory {
    #[sea_orm(iden = "_schema_history")]
    Table,
    Id,
    CollectionId,
    CollectionName,
    Action,
    Actor,
    Diff,
    Created,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Collections::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Collections::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Collections::Name)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Collections::Type).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Collections::System)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Collections::Fields).text().not_null())
                    .col(ColumnDef::new(Collections::Indexes).text().not_null())
                    .col(ColumnDef::new(Collections::ListRule).text().null())
                    .col(ColumnDef::new(Collections::ViewRule).text().null())
                    .col(ColumnDef::new(Collections::CreateRule).text().null())
                    .col(ColumnDef::new(Collections::UpdateRule).text().null())
                    .col(ColumnDef::new(Collections::DeleteRule).text().null())
                    .col(ColumnDef::new(Collections::Options).text().not_null())
                    .col(
                        ColumnDef::new(Collections::Created)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Collections::Updated)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SchemaHistory::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SchemaHistory::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SchemaHistory::CollectionId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SchemaHistory::CollectionName)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SchemaHistory::Action)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(SchemaHistory::Actor).string_len(128).null())
                    .col(ColumnDef::new(SchemaHistory::Diff).text().not_null())
                    .col(
                        ColumnDef::new(SchemaHistory::Created)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx__schema_history_collection")
                    .table(SchemaHistory::Table)
                    .col(SchemaHistory::CollectionId)
                    .col(SchemaHistory::Created)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SchemaHistory::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Collections::Table).to_owned())
            .await
    }
}
