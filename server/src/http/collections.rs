//! The collections API (superusers only), PocketBase-shaped.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::identity::Caller;
use crate::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    filter: Option<String>,
    skip_total: Option<String>,
}

/// Until the filter language exists, the collections list understands
/// `name = 'x'`, `name ~ 'x'` (contains) and `type = 'base'|'auth'`, joined by `&&`.
fn name_filter(filter: &str) -> Result<Vec<(String, char, String)>, ApiError> {
    let mut terms = Vec::new();
    for part in filter.split("&&").map(str::trim).filter(|p| !p.is_empty()) {
        let (field, op, value) = ["~", "="]
            .iter()
            .find_map(|op| {
                let (field, value) = part.split_once(op)?;
                Some((field.trim(), op.chars().next()?, value.trim()))
            })
            .ok_or_else(|| ApiError::bad_request(format!("Unsupported filter `{part}`.")))?;
        let unquoted = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')));
        match (field, unquoted) {
            ("name" | "type", Some(value)) => terms.push((field.to_owned(), op, value.to_owned())),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Unsupported filter `{part}`: collections can be filtered by name = '…', name ~ '…' or type = '…'."
                )));
            }
        }
    }
    Ok(terms)
}

/// `GET /api/collections`
pub async fn list_collections(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let terms = name_filter(query.filter.as_deref().unwrap_or_default())?;
    let page = query.page.unwrap_or(1).max(1);
    let per_page = query.per_page.unwrap_or(30).clamp(1, 1000);
    let snapshot = state.schema.snapshot();
    let matching: Vec<Value> = snapshot
        .all()
        .iter()
        .filter(|c| {
            terms.iter().all(|(field, op, value)| {
                let actual = if field == "name" {
                    c.name.as_str()
                } else {
                    c.kind.as_str()
                };
                match op {
                    '~' => actual.to_lowercase().contains(&value.to_lowercase()),
                    _ => actual == value,
                }
            })
        })
        .map(|c| c.to_json())
        .collect();
    let total = matching.len() as u64;
    let items: Vec<Value> = matching
        .into_iter()
        .skip(usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX))
        .take(usize::try_from(per_page).unwrap_or(usize::MAX))
        .collect();
    let skip_total = matches!(query.skip_total.as_deref(), Some("1" | "true"));
    let (total_items, total_pages) = if skip_total {
        (-1i64, -1i64)
    } else {
        (total as i64, total.div_ceil(per_page) as i64)
    };
    Ok(HttpResponse::Ok().json(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total_items,
        "totalPages": total_pages,
        "items": items,
    })))
}

/// `GET /api/collections/{idOrName}`
pub async fn view_collection(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let snapshot = state.schema.snapshot();
    let collection = snapshot.get(&path).ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(collection.to_json()))
}

/// `POST /api/collections`
pub async fn create_collection(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let collection = state.schema.create(&body, &caller.actor()).await?;
    Ok(HttpResponse::Ok().json(collection.to_json()))
}

/// `PATCH /api/collections/{idOrName}`
pub async fn update_collection(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let collection = state.schema.update(&path, &body, &caller.actor()).await?;
    Ok(HttpResponse::Ok().json(collection.to_json()))
}

/// `DELETE /api/collections/{idOrName}`
pub async fn delete_collection(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    state.schema.delete(&path, &caller.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportBody {
    collections: Vec<Value>,
    #[serde(default)]
    delete_missing: bool,
}

/// `PUT /api/collections/import`
pub async fn import_collections(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ImportBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    state
        .schema
        .import(&body.collections, body.delete_missing, &caller.actor())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::name_filter;

    #[test]
    fn name_filters() {
        assert_eq!(name_filter("").unwrap(), vec![]);
        assert_eq!(
            name_filter("name = 'posts'").unwrap(),
            vec![("name".to_owned(), '=', "posts".to_owned())]
        );
        assert_eq!(name_filter("name~\"po\" && type='base'").unwrap().len(), 2);
        assert!(name_filter("views > 3").is_err());
        assert!(name_filter("name = posts").is_err());
    }
}
