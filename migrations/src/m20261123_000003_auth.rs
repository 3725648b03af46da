//! What app-user auth keeps besides records: `_mails` (mails stored when no SMTP
//! server is configured), `_api_keys` (service accounts) and `_external_auths`
//! (OAuth2 identities linked to auth records).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Mails {
    #[sea_orm(iden = "_mails")]
    Table,
    Id,
    Kind,
    Recipient,
    Subject,
    Body,
    Created,
}

#[derive(DeriveIden)]
enum ApiKeys {
    #[sea_orm(iden = "_api_keys")]
    Table,
    Id,
    Name,
    Hash,
    Scopes,
    Expires,
    Revoked,
    LastUsed,
    Created,
}

#[derive(DeriveIden)]
enum ExternalAuths {
    #[sea_orm(iden = "_external_auths")]
    Table,
    Id,
    CollectionId,
    RecordId,
    Provider,
    ProviderId,
    Created,
}

fn id<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn created<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Mails::Table)
                    .if_not_exists()
                    .col(id(Mails::Id))
                    .col(ColumnDef::new(Mails::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(Mails::Recipient).text().not_null())
                    .col(ColumnDef::new(Mails::Subject).text().not_null())
                    .col(ColumnDef::new(Mails::Body).text().not_null())
                    .col(created(Mails::Created))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(id(ApiKeys::Id))
                    .col(ColumnDef::new(ApiKeys::Name).text().not_null())
                    .col(ColumnDef::new(ApiKeys::Hash).text().not_null())
                    .col(ColumnDef::new(ApiKeys::Scopes).text().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::Expires)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::Revoked)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::LastUsed)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(created(ApiKeys::Created))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ExternalAuths::Table)
                    .if_not_exists()
                    .col(id(ExternalAuths::Id))
                    .col(
                        ColumnDef::new(ExternalAuths::CollectionId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ExternalAuths::RecordId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ExternalAuths::Provider)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ExternalAuths::ProviderId).text().not_null())
                    .col(created(ExternalAuths::Created))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_external_auths_provider")
                    .table(ExternalAuths::Table)
                    .col(ExternalAuths::CollectionId)
                    .col(ExternalAuths::Provider)
                    .col(ExternalAuths::ProviderId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Mails::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            ExternalAuths::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
