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

/// `GET /api/collections`
pub async fn list_collections(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let page = query.page.unwrap_or(1).max(1);
    let per_page = query.per_page.unwrap_or(30).clamp(1, 1000);
    let matching: Vec<Value> = state
        .schema
        .list(query.filter.as_deref().unwrap_or_default())?
        .iter()
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
