//! Auth endpoints for every auth collection, PocketBase-shaped.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::identity::Caller;
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
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    // Password guessing: at most so many attempts per identity and address.
    if let Some(limit) = state.live.current().rate_limit_auth {
        let ip = req
            .extensions()
            .get::<super::middleware::ClientIp>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        let key = crate::ratelimit::password_key(path.as_str(), &body.identity, &ip);
        state
            .limiter
            .hit(&key, limit)
            .await
            .map_err(ApiError::too_many_requests)?;
    }
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
    Ok(token_response(token, &collection, &record))
}

/// `{token, record}` as the signed-in record sees itself.
fn token_response(
    token: String,
    collection: &crate::schema::Collection,
    record: &crate::records::Record,
) -> HttpResponse {
    let superuser = collection.name == crate::auth::SUPERUSERS;
    HttpResponse::Ok().json(json!({
        "token": token,
        "record": public_view(collection, record, superuser, true),
    }))
}

/// `POST /api/collections/{collection}/auth-refresh` → a new `{token, record}`.
pub async fn auth_refresh(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    let (token, collection, record) = state.auth.refresh(&snapshot, &path, &caller.0).await?;
    Ok(token_response(token, &collection, &record))
}

/// `GET /api/collections/{collection}/auth-methods`
pub async fn auth_methods(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    Ok(HttpResponse::Ok().json(state.auth.auth_methods(&snapshot, &path)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    #[serde(default)]
    token: String,
}

/// `POST /api/collections/{collection}/request-verification` → 204 whether or not the
/// account exists.
pub async fn request_verification(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    state
        .auth
        .request_verification(&snapshot, &path, &body.email)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/collections/{collection}/confirm-verification`
pub async fn confirm_verification(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    state
        .auth
        .confirm_verification(&snapshot, &path, &body.token)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/collections/{collection}/request-password-reset` → 204 whether or not
/// the account exists.
pub async fn request_password_reset(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    state
        .auth
        .request_password_reset(&snapshot, &path, &body.email)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetBody {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// `POST /api/collections/{collection}/confirm-password-reset`
pub async fn confirm_password_reset(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ResetBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    state
        .auth
        .confirm_password_reset(
            &snapshot,
            &path,
            &body.token,
            &body.password,
            &body.password_confirm,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmailChangeBody {
    #[serde(default)]
    new_email: String,
}

/// `POST /api/collections/{collection}/request-email-change` (signed in).
pub async fn request_email_change(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: Caller,
    body: web::Json<EmailChangeBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    state
        .auth
        .request_email_change(&snapshot, &path, &caller.0, &body.new_email)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmEmailBody {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

/// `POST /api/collections/{collection}/confirm-email-change`
pub async fn confirm_email_change(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ConfirmEmailBody>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    state
        .auth
        .confirm_email_change(&snapshot, &path, &body.token, &body.password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImpersonateBody {
    duration: Option<u64>,
}

/// `POST /api/collections/{collection}/impersonate/{id}` (superusers).
pub async fn impersonate(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    caller: Caller,
    body: Option<web::Json<ImpersonateBody>>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let (collection, id) = path.into_inner();
    let duration = body.and_then(|b| b.duration);
    let snapshot = state.schema.snapshot();
    let (token, collection, record) = state
        .auth
        .impersonate(&snapshot, &collection, &id, duration)
        .await?;
    Ok(token_response(token, &collection, &record))
}

/// `POST /api/collections/{collection}/records/{id}/revoke-sessions` (superusers, or
/// the record's owner): every token of the record stops working.
pub async fn revoke_sessions(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    if !caller.is_record(&collection, &id) {
        caller.require_superuser()?;
    }
    let snapshot = state.schema.snapshot();
    state
        .auth
        .revoke_sessions(&snapshot, &collection, &id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/collections/{collection}/auth-logout`: sign the caller out everywhere
/// (their token key is rotated, so every token of theirs stops working) → 204.
pub async fn auth_logout(
    state: web::Data<AppState>,
    path: web::Path<String>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let Some(id) = caller.0.id().map(str::to_owned) else {
        return Err(super::identity::invalid_token());
    };
    if !caller.is_record(&path, &id) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "The token is not for a record of this collection.",
        ));
    }
    let snapshot = state.schema.snapshot();
    state.auth.revoke_sessions(&snapshot, &path, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    page: Option<u64>,
    per_page: Option<u64>,
}

/// `GET /api/mails` (superusers): mails stored because no SMTP server is configured.
pub async fn mails(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let page = query.page.unwrap_or(1).max(1);
    let per_page = query.per_page.unwrap_or(30).clamp(1, 1000);
    // The service pages (and bounds) the same way for the admin UI.
    let (items, total) = state.auth.mails(page, per_page).await?;
    let items: Vec<_> = items
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id, "kind": m.kind, "to": m.recipient, "subject": m.subject,
                "body": m.body, "created": m.created.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total,
        "totalPages": total.div_ceil(per_page),
        "items": items,
    })))
}

/// `POST /api/keys` (superusers): `{name, scopes, expires?}` → the key, with its
/// secret in `key`, shown this once.
pub async fn create_key(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let snapshot = state.schema.snapshot();
    let (model, secret) = state.auth.keys.create(&snapshot, &body).await?;
    let mut out = crate::auth::keys::public(&model);
    if let Some(map) = out.as_object_mut() {
        map.insert("key".into(), serde_json::Value::String(secret));
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /api/keys` (superusers): every key, without secrets.
pub async fn list_keys(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let keys = state.auth.keys.list().await?;
    let items: Vec<_> = keys.iter().map(crate::auth::keys::public).collect();
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

/// `DELETE /api/keys/{id}` (superusers): revoke.
pub async fn revoke_key(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    if state.auth.keys.revoke(&path).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Body {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    code_verifier: String,
    #[serde(default, rename = "redirectURL", alias = "redirectUrl")]
    redirect_url: String,
    #[serde(default)]
    create_data: serde_json::Map<String, serde_json::Value>,
}

/// `POST /api/collections/{collection}/auth-with-oauth2` → `{token, record, meta}`.
pub async fn auth_with_oauth2(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<OAuth2Body>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.schema.snapshot();
    let (token, collection, record, meta) = state
        .auth
        .auth_with_oauth2(
            &snapshot,
            &path,
            &body.provider,
            &body.code,
            &body.code_verifier,
            &body.redirect_url,
            &body.create_data,
        )
        .await?;
    let superuser = collection.name == crate::auth::SUPERUSERS;
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "record": public_view(&collection, &record, superuser, true),
        "meta": meta,
    })))
}
