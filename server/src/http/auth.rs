//! Auth endpoints for every auth collection, PocketBase-shaped.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::AppState;
use crate::records::public_view;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordBody {
    #[serde(default)]
    identity: String,
    #[serde(default)]
    password: String,
    identity_field: Option<String>,
}

/// `POST /api/collections/{collection}/auth-with-password` → `{token, record}`.
pub async fn auth_with_password(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    let (token, collection, record) = state
        .auth
        .auth_with_password(
            &snapshot,
            &path,
            &body.identity,
            &body.password,
            body.identity_field.as_deref(),
        )
        .await?;
    let superuser = collection.name == crate::auth::SUPERUSERS;
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "record": public_view(&collection, &record, superuser, true),
    })))
}
