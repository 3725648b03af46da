//! `/api/functions`: deploy, list, view, change and delete WASM functions
//! (superusers and `superuser`-scoped keys), their invocation log, and the HTTP
//! routes of functions with the `http` trigger at `/api/functions/{name}/{path…}`.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::error::ApiError;
use super::identity::Caller;
use crate::AppState;
use crate::functions::{DeployError, HttpCall, Manifest};

fn deploy_error(e: DeployError) -> ApiError {
    e.problem().into()
}

/// The manifest and the component of a deploy: `multipart/form-data` with a
/// `manifest` field (JSON) and a `component` file.
async fn deploy_form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Manifest, Vec<u8>), ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("multipart/form-data") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send multipart/form-data with a `manifest` field (JSON) and a `component` file.",
        ));
    }
    let mut form = Multipart::new(req.headers(), payload);
    let mut manifest = None;
    let mut component = None;
    let mut total = 0usize;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("Malformed form data: {e}.")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("Malformed form data: {e}.")))?;
            total += chunk.len();
            if total > limit {
                return Err(ApiError::payload_too_large(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "manifest" => {
                let parsed: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::bad_request(format!("`manifest` is not a function manifest: {e}."))
                })?;
                manifest = Some(parsed);
            }
            "component" => component = Some(bytes),
            other => {
                return Err(ApiError::bad_request(format!(
                    "Unknown form field `{other}`: send `manifest` and `component`."
                )));
            }
        }
    }
    match (manifest, component) {
        (Some(m), Some(c)) => Ok((m, c)),
        (None, _) => Err(ApiError::bad_request("The `manifest` field is missing.")),
        (_, None) => Err(ApiError::bad_request("The `component` file is missing.")),
    }
}

/// `POST /api/functions`: deploy a function, or a new version of one.
pub async fn deploy(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let (manifest, component) =
        deploy_form(&req, payload, state.settings.functions_max_size).await?;
    let deployed = state
        .functions
        .deploy(manifest, component)
        .await
        .map_err(deploy_error)?;
    Ok(HttpResponse::Ok().json(deployed.json()))
}

/// `GET /api/functions`: the live functions.
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let live = state.functions.live();
    let mut items: Vec<_> = live.values().collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let items: Vec<Value> = items.iter().map(|d| d.json()).collect();
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

/// `GET /api/functions/{name}`: one function with its version history.
pub async fn view(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let live = state.functions.live();
    let deployed = live.get(path.as_str()).ok_or_else(ApiError::not_found)?;
    let history = state
        .functions
        .history(&path)
        .await
        .map_err(|e| ApiError::from(crate::errors::Problem::from_db(&e)))?;
    let mut body = deployed.json();
    if let Some(object) = body.as_object_mut() {
        object.insert("history".into(), Value::Array(history));
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `PATCH /api/functions/{name}`: change triggers, scopes, limits or `enabled`.
pub async fn change(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let patch = super::body::object(&req, payload).await?;
    let deployed = state
        .functions
        .change(&path, &patch)
        .await
        .map_err(deploy_error)?;
    Ok(HttpResponse::Ok().json(deployed.json()))
}

/// `DELETE /api/functions/{name}`.
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    state.functions.delete(&path).await.map_err(deploy_error)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize)]
pub struct InvocationParams {
    function: Option<String>,
    limit: Option<u64>,
}

/// `GET /api/functions/invocations?function=&limit=`: the newest calls.
pub async fn invocations(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Query<InvocationParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let items: Vec<Value> = state
        .functions
        .invocations(params.function.as_deref(), limit)
        .await
        .map_err(|e| ApiError::from(crate::errors::Problem::from_db(&e)))?
        .iter()
        .map(crate::functions::invocation_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

#[derive(serde::Deserialize)]
pub struct DeliveryParams {
    function: Option<String>,
    /// `dead` or `retry`; both when absent.
    state: Option<String>,
    limit: Option<u64>,
}

/// `GET /api/functions/deliveries?function=&state=dead|retry&limit=`: after-event
/// calls waiting for a retry and dead letters, newest first.
pub async fn deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Query<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    if let Some(s) = params.state.as_deref()
        && s != "dead"
        && s != "retry"
    {
        return Err(ApiError::from(crate::errors::Problem::new(
            crate::errors::Code::InvalidRequest,
            "`state` is `dead` or `retry`.",
        )));
    }
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let items: Vec<Value> = state
        .functions
        .deliveries(params.function.as_deref(), params.state.as_deref(), limit)
        .await
        .map_err(|e| ApiError::from(crate::errors::Problem::from_db(&e)))?
        .iter()
        .map(crate::functions::triggers::delivery_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

/// `POST /api/functions/deliveries/{id}/replay`: a dead letter gets a fresh set of
/// attempts, the first at once.
pub async fn replay(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let row = state
        .functions
        .replay(&path)
        .await
        .map_err(|e| ApiError::from(crate::errors::Problem::from_db(&e)))?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(crate::functions::triggers::delivery_json(&row)))
}

/// `DELETE /api/functions/deliveries/{id}`: drop a dead letter (or a waiting retry).
pub async fn discard(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_superuser()?;
    let found = state
        .functions
        .discard(&path)
        .await
        .map_err(|e| ApiError::from(crate::errors::Problem::from_db(&e)))?;
    if !found {
        return Err(ApiError::not_found());
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Request headers a function does not get: the caller's credentials (the function
/// learns who calls from `context.caller`) and hop-by-hop ones.
fn passed_on(name: &str) -> bool {
    !matches!(
        name,
        "authorization" | "cookie" | "connection" | "keep-alive" | "transfer-encoding" | "upgrade"
    )
}

/// `ANY /api/functions/{name}/{path…}`: call an HTTP function.
pub async fn call(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    let tail = req.match_info().get("tail").unwrap_or_default();
    let mut path_and_query = format!("/{tail}");
    if !req.query_string().is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(req.query_string());
    }
    let headers = req
        .headers()
        .iter()
        .filter(|(k, _)| passed_on(k.as_str()))
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let mut request = crate::filter::compile::Request::new(req.method().as_str());
    request.auth = crate::records::read::request_auth(&caller.0);
    request.headers = super::records::rule_headers(&req);
    let answer = state
        .functions
        .http(
            &name,
            HttpCall {
                caller: caller.0,
                method: req.method().as_str().to_owned(),
                path_and_query,
                headers,
                body,
                request,
            },
        )
        .await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in answer.headers {
        if passed_on(&name) && name != "content-length" {
            response.append_header((name, value));
        }
    }
    Ok(response.body(answer.body))
}
