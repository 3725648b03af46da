//! The `batch` mutation: typed operations turned into `records`' batch requests,
//! run in one transaction.

use async_graphql::{Error, ErrorExtensions, Value as Gql};
use serde_json::Value;

use super::Ctx;
use crate::records::batch::{BatchError, BatchRequest};

/// `(collection, create field, update field, delete field)` per collection.
type Routes = [(String, String, String, String)];

/// The operations as record requests.
///
/// Fails with a message naming the operation that is not one write.
pub fn requests(routes: &Routes, operations: &Gql) -> Result<Vec<BatchRequest>, String> {
    let Gql::List(items) = operations else {
        return Err("`operations` must be a list".into());
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Gql::Object(object) = item else {
            return Err(format!("operations.{index} must be an object"));
        };
        let mut set = object.iter().filter(|(_, v)| !matches!(v, Gql::Null));
        let (Some((key, value)), None) = (set.next(), set.next()) else {
            return Err(format!("operations.{index} must set exactly one field"));
        };
        let key = key.as_str();
        let Some((collection, create, update, _)) = routes
            .iter()
            .find(|(_, c, u, d)| key == c || key == u || key == d)
        else {
            return Err(format!("operations.{index}: `{key}` is not a write"));
        };
        let base = format!("/api/collections/{collection}/records");
        let id = || match value {
            Gql::Object(o) => o.get("id").and_then(|v| match v {
                Gql::String(s) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        };
        let request = if key == create {
            BatchRequest {
                method: "POST".into(),
                url: base,
                body: super::lower::values(value),
            }
        } else {
            let id = id().ok_or_else(|| format!("operations.{index} needs an id"))?;
            let url = format!(
                "{base}/{}",
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            );
            if key == update {
                let input = match value {
                    Gql::Object(o) => o.get("input").cloned().unwrap_or(Gql::Null),
                    _ => Gql::Null,
                };
                BatchRequest {
                    method: "PATCH".into(),
                    url,
                    body: super::lower::values(&input),
                }
            } else {
                BatchRequest {
                    method: "DELETE".into(),
                    url,
                    body: serde_json::Map::new(),
                }
            }
        };
        out.push(request);
    }
    Ok(out)
}

/// Run the batch as the operation's caller: each write's status and record.
///
/// Fails with the first failed write's error (with its `index`), or when batches
/// are off or too long.
pub async fn run(ctx: &Ctx, requests: Vec<BatchRequest>) -> Result<Vec<(u16, Value)>, Error> {
    match ctx
        .records
        .batch(&ctx.identity, &ctx.request("POST"), requests, ctx.batch_max)
        .await
    {
        Ok(results) => Ok(results),
        Err(BatchError::TooMany { max: 0 }) => {
            Err(super::problem_error(crate::errors::Problem::new(
                crate::errors::Code::Forbidden,
                "Batch requests are turned off.",
            )))
        }
        Err(BatchError::TooMany { max }) => Err(super::problem_error(crate::errors::Problem::new(
            crate::errors::Code::InvalidRequest,
            format!("A batch holds 1 to {max} operations."),
        ))),
        Err(BatchError::Failed { index, error }) => {
            Err(super::error(error).extend_with(|_, e| e.set("index", index as i64)))
        }
    }
}
