//! `GET /api/realtime` (an SSE stream; first event `PB_CONNECT`) and `POST
//! /api/realtime` (`{clientId, subscriptions}`), as PocketBase's SDK speaks them.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;

use super::error::ApiError;
use crate::AppState;

/// Unregisters the client when its stream is dropped (the connection closed).
struct Registration {
    state: web::Data<AppState>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.state.realtime.disconnect(&self.id);
        if self.state.cache.external_name().is_some() {
            let (state, id) = (self.state.clone(), self.id.clone());
            actix_web::rt::spawn(async move { state.cluster.client_gone(&id).await });
        }
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
    // Its subscriptions may be set through another instance.
    state.cluster.client_connected(&id).await;
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
/// checked with: the caller's) — here, or on the instance holding the client's
/// stream.
pub async fn subscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SubscribeBody>,
) -> Result<HttpResponse, ApiError> {
    let authorization = match req.headers().get(AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => Some(value.to_owned()),
        Some(Err(_)) => return Err(super::identity::invalid_token()),
    };
    let (mut status, mut message) = crate::cluster::subscribe_here(
        &state,
        &body.client_id,
        authorization.as_deref(),
        &body.subscriptions,
    )
    .await;
    if status == 404
        && let Some(answer) = state
            .cluster
            .forward_subscribe(&body.client_id, authorization, &body.subscriptions)
            .await
    {
        (status, message) = answer;
    }
    match StatusCode::from_u16(status) {
        Ok(StatusCode::NO_CONTENT) => Ok(HttpResponse::NoContent().finish()),
        Ok(status) => Err(ApiError::new(status, message)),
        Err(_) => Err(ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR)),
    }
}
