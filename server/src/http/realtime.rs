//! `GET /api/realtime` (an SSE stream; first event `PB_CONNECT`) and `POST
//! /api/realtime` (`{clientId, subscriptions}`), as PocketBase's SDK speaks them.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;

use super::error::ApiError;
use super::identity::Caller;
use crate::AppState;
use crate::realtime::RealtimeError;

/// Unregisters the client when its stream is dropped (the connection closed).
struct Registration {
    state: web::Data<AppState>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.state.realtime.disconnect(&self.id);
    }
}

/// `GET /api/realtime`
pub async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let ip = req
        .extensions()
        .get::<super::middleware::ClientIp>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0);
    let (id, receiver) = state
        .realtime
        .connect(ip)
        .ok_or_else(|| ApiError::too_many_requests(Duration::from_secs(60)))?;
    let keepalive = state.realtime.limits().keepalive;
    let registration = Registration {
        state: state.clone(),
        id,
    };
    let stream = futures_util::stream::unfold(
        (receiver, registration, tokio::time::interval(keepalive)),
        |(mut receiver, registration, mut tick)| async move {
            tick.reset();
            let next = tokio::select! {
                message = receiver.recv() => message,
                _ = tick.tick() => Some(Bytes::from_static(b":keep-alive\n\n")),
            };
            next.map(|bytes| {
                (
                    Ok::<_, actix_web::Error>(bytes),
                    (receiver, registration, tick),
                )
            })
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscribeBody {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    subscriptions: Vec<String>,
}

/// `POST /api/realtime`: set the client's subscriptions (and the identity they are
/// checked with: the caller's).
pub async fn subscribe(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<SubscribeBody>,
) -> Result<HttpResponse, ApiError> {
    state
        .realtime
        .subscribe(&body.client_id, caller.0, &body.subscriptions)
        .map_err(|err| match err {
            RealtimeError::UnknownClient => {
                ApiError::new(StatusCode::NOT_FOUND, "Missing or invalid client id.")
            }
            RealtimeError::Forbidden => ApiError::new(
                StatusCode::FORBIDDEN,
                "The current and the previous request authorization don't match.",
            ),
            RealtimeError::Invalid(message) => ApiError::bad_request(message),
        })?;
    Ok(HttpResponse::NoContent().finish())
}
