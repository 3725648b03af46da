//! `/api/health` (liveness: the process answers) and `/api/ready` (readiness: the
//! database answers, and so do Redis and RabbitMQ when they are configured).

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::error::{ApiError, FieldError};
use crate::AppState;

const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness, with PocketBase's body so its SDK's `health.check()` works.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": 200, "message": "API is healthy.", "data": {}}))
}

/// Readiness: 200 when every backing service answers, 503 naming those that do not.
/// Each check is `{"code": "up"|"down", "message": …}` under `data`.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = async {
        match tokio::time::timeout(DB_PING_TIMEOUT, state.db.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {DB_PING_TIMEOUT:?}")),
        }
    };
    let cache = async {
        let name = state.cache.external_name()?;
        Some((name, state.cache.ping().await.map_err(|e| e.to_string())))
    };
    let broker = async {
        let name = state.broker.external_name()?;
        Some((name, state.broker.ping().await.map_err(|e| e.to_string())))
    };
    let (database, cache, broker) = tokio::join!(database, cache, broker);

    let mut checks = BTreeMap::new();
    let mut down = Vec::new();
    for (name, result) in std::iter::once(("database", database))
        .chain(cache)
        .chain(broker)
    {
        let (code, message) = match result {
            Ok(()) => ("up", "ok".to_owned()),
            Err(message) => {
                tracing::warn!(service = name, %message, "readiness check failed");
                down.push(name);
                ("down", message)
            }
        };
        checks.insert(
            name.to_owned(),
            FieldError {
                code: code.to_owned(),
                message,
            },
        );
    }
    let (status, message) = if down.is_empty() {
        (StatusCode::OK, "Ready.".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: {} down.", down.join(", ")),
        )
    };
    let body = ApiError {
        status,
        message,
        data: checks,
        retry_after: None,
        code: None,
    }
    .body();
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body)
}

/// `GET /api/instances` (superusers): the live instances of this installation, by
/// their heartbeats in the shared cache (this one only without Redis).
pub async fn instances(
    state: web::Data<AppState>,
    caller: super::identity::Caller,
) -> Result<HttpResponse, super::ApiError> {
    caller.require_superuser()?;
    let items = state.cluster.instances().await;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "self": state.cache.instance(),
        "shared": state.cache.is_shared(),
        "items": items,
    })))
}
