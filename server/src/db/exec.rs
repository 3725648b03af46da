//! One way for the record pipeline to run a statement, whatever is underneath: a
//! sea-orm connection or transaction (PostgreSQL, and an in-memory SQLite database),
//! or a SQLite connection of [`super::lite`] (a reader from its pool, or the writer
//! inside a group commit). Rows come back as [`Row`], read by column name and type.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult};

use super::lite::{self, LiteConn, LiteRow, Readers};

/// Where a statement runs.
#[derive(Clone, Copy)]
pub enum Exec<'c> {
    /// A sea-orm transaction.
    Txn(&'c DatabaseTransaction),
    /// A sea-orm pool, outside any transaction.
    Pool(&'c DatabaseConnection),
    /// The SQLite writer's connection, inside a group commit.
    Lite(&'c LiteConn),
    /// SQLite reader connections; each statement runs on the calling thread.
    Readers(&'c Readers),
}

impl std::fmt::Debug for Exec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exec::Txn(_) => "Exec::Txn",
            Exec::Pool(_) => "Exec::Pool",
            Exec::Lite(_) => "Exec::Lite",
            Exec::Readers(_) => "Exec::Readers",
        })
    }
}

/// A row of a result.
#[derive(Debug)]
pub enum Row {
    Sea(QueryResult),
    Lite(LiteRow),
}

/// A column value a [`Row`] can be read as.
pub trait Column: sea_orm::TryGetable + Sized {
    /// The value from a SQLite cell.
    ///
    /// Fails when the cell holds another type.
    fn from_lite(value: &rusqlite::types::Value, column: &str) -> Result<Self, DbErr>;
}

fn mismatch(column: &str, wanted: &str) -> DbErr {
    DbErr::Type(format!("column `{column}` is not {wanted}"))
}

impl Column for String {
    fn from_lite(value: &rusqlite::types::Value, column: &str) -> Result<Self, DbErr> {
        use rusqlite::types::Value as V;
        match value {
            V::Text(s) => Ok(s.clone()),
            V::Integer(n) => Ok(n.to_string()),
            V::Real(n) => Ok(n.to_string()),
            V::Blob(bytes) => {
                String::from_utf8(bytes.clone()).map_err(|_| mismatch(column, "text"))
            }
            V::Null => Err(mismatch(column, "text (it is null)")),
        }
    }
}

impl Column for i64 {
    fn from_lite(value: &rusqlite::types::Value, column: &str) -> Result<Self, DbErr> {
        match value {
            rusqlite::types::Value::Integer(n) => Ok(*n),
            _ => Err(mismatch(column, "an integer")),
        }
    }
}

impl Column for f64 {
    fn from_lite(value: &rusqlite::types::Value, column: &str) -> Result<Self, DbErr> {
        use rusqlite::types::Value as V;
        match value {
            V::Real(n) => Ok(*n),
            V::Integer(n) => Ok(*n as f64),
            _ => Err(mismatch(column, "a number")),
        }
    }
}

impl Column for bool {
    fn from_lite(value: &rusqlite::types::Value, column: &str) -> Result<Self, DbErr> {
        use rusqlite::types::Value as V;
        match value {
            V::Integer(n) => Ok(*n != 0),
            V::Real(n) => Ok(*n != 0.0),
            _ => Err(mismatch(column, "a boolean")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_lite(value: &rusqlite::types::Value, column: &str) -> Result<Self, DbErr> {
        match value {
            rusqlite::types::Value::Null => Ok(None),
            other => T::from_lite(other, column).map(Some),
        }
    }
}

impl Row {
    /// The value of `column`, as `T`.
    ///
    /// Fails when there is no such column or it holds another type.
    pub fn get<T: Column>(&self, column: &str) -> Result<T, DbErr> {
        match self {
            Row::Sea(row) => row.try_get("", column),
            Row::Lite(row) => T::from_lite(row.value(column)?, column),
        }
    }
}

impl Exec<'_> {
    /// The first row of `statement`, if any.
    ///
    /// Fails when the statement fails.
    pub async fn one(&self, statement: sea_orm::Statement) -> Result<Option<Row>, DbErr> {
        match self {
            Exec::Txn(txn) => Ok(txn.query_one_raw(statement).await?.map(Row::Sea)),
            Exec::Pool(pool) => Ok(pool.query_one_raw(statement).await?.map(Row::Sea)),
            Exec::Lite(conn) => Ok(lite::query(conn, &statement, 1)?.pop().map(Row::Lite)),
            Exec::Readers(readers) => Ok(readers
                .with(|conn| lite::query(conn, &statement, 1))?
                .pop()
                .map(Row::Lite)),
        }
    }

    /// Every row of `statement`.
    ///
    /// Fails when the statement fails.
    pub async fn all(&self, statement: sea_orm::Statement) -> Result<Vec<Row>, DbErr> {
        match self {
            Exec::Txn(txn) => Ok(into_rows(txn.query_all_raw(statement).await?)),
            Exec::Pool(pool) => Ok(into_rows(pool.query_all_raw(statement).await?)),
            Exec::Lite(conn) => Ok(lite_rows(lite::query(conn, &statement, usize::MAX)?)),
            Exec::Readers(readers) => Ok(lite_rows(
                readers.with(|conn| lite::query(conn, &statement, usize::MAX))?,
            )),
        }
    }

    /// Run `statement` for its effect; returns how many rows it changed.
    ///
    /// Fails when the statement fails.
    pub async fn execute(&self, statement: sea_orm::Statement) -> Result<u64, DbErr> {
        match self {
            Exec::Txn(txn) => Ok(txn.execute_raw(statement).await?.rows_affected()),
            Exec::Pool(pool) => Ok(pool.execute_raw(statement).await?.rows_affected()),
            Exec::Lite(conn) => lite::execute(conn, &statement),
            Exec::Readers(readers) => readers.with(|conn| lite::execute(conn, &statement)),
        }
    }
}

fn lite_rows(rows: Vec<LiteRow>) -> Vec<Row> {
    rows.into_iter().map(Row::Lite).collect()
}

fn into_rows(rows: Vec<QueryResult>) -> Vec<Row> {
    rows.into_iter().map(Row::Sea).collect()
}

/// Column names shared by the rows of one result.
pub(super) type Names = Arc<[String]>;
