//! The one middleware every request passes: request id, tracing span, body-size check,
//! metrics, and the guarantee that every error answer has the standard error body.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError, web};
use tracing::Instrument;

use super::error::{ApiError, default_message};
use crate::AppState;
use crate::telemetry::HttpLabels;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label for requests no route matched, so unknown paths add no series.
const UNMATCHED: &str = "<unmatched>";

/// Request id from the client if it is reasonable, else a fresh UUIDv7.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The method as a metric label: the standard ones by name, anything else (actix
/// accepts extension methods) as `OTHER`, so a client cannot mint new series.
fn method_label(method: &Method) -> String {
    match *method {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS
        | Method::CONNECT
        | Method::TRACE => method.as_str().to_owned(),
        _ => "OTHER".to_owned(),
    }
}

fn declared_length(req: &ServiceRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Wraps every request; see the module docs.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let id = request_id(&req);
    let route = req.match_pattern().unwrap_or_else(|| UNMATCHED.to_owned());
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "http_request",
        request_id = %id,
        method = %method,
        route = %route,
        status = tracing::field::Empty,
    );
    let limit = state.as_ref().map_or(usize::MAX, |s| {
        if route == "/api/functions" {
            s.settings.functions_max_size
        } else {
            s.settings.body_limit
        }
    });
    let refusal = if declared_length(&req).is_some_and(|n| n > limit as u64) {
        // Refuse from the headers alone; the body is never read.
        Some(ApiError::payload_too_large(limit))
    } else if let Some(state) = &state {
        rate_limited(state, &req, &route).await
    } else {
        None
    };

    let res = if let Some(refusal) = refusal {
        Ok(req.into_response(refusal.error_response()))
    } else {
        // Note: no clone of the request may live across this call; routing needs the
        // only reference to it.
        next.call(req)
            .instrument(span.clone())
            .await
            .map(|res| with_error_body(res.map_into_boxed_body()))
    };
    let (status, res) = match res {
        Ok(mut res) => {
            if let Ok(value) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(REQUEST_ID, value);
            }
            (res.status(), Ok(res))
        }
        // Only a failing middleware below this one errs; handlers' errors are already
        // responses. Answer it with the standard body all the same.
        Err(err) => {
            let status = err.as_response_error().status_code();
            let mut response = ApiError::from_status(status).error_response();
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            (
                status,
                Err(InternalError::from_response(err, response).into()),
            )
        }
    };
    let status = status.as_u16();
    let elapsed = started.elapsed();
    span.record("status", status);
    if let Some(state) = state {
        state.metrics.observe_http(
            HttpLabels {
                method,
                route,
                status,
            },
            elapsed,
        );
    }
    tracing::info!(
        parent: &span,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request completed"
    );
    res
}

/// The client's address, as [`crate::ratelimit::client_ip`] works it out; handlers read
/// it from the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub std::net::IpAddr);

/// Whether a route is one of the auth endpoints of an auth collection.
fn is_auth_route(route: &str) -> bool {
    route
        .strip_prefix("/api/collections/{collection}/")
        .is_some_and(|action| !action.starts_with("records"))
}

/// A 429 when the client is over the general per-IP limit, or over the per-IP limit
/// of the auth endpoints; records the client's address for the handlers.
async fn rate_limited(state: &AppState, req: &ServiceRequest, route: &str) -> Option<ApiError> {
    let peer = req
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = crate::ratelimit::client_ip(peer, forwarded, &state.settings.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    let live = state.live.current();
    if let Some(limit) = live.rate_limit
        && let Err(wait) = state.limiter.hit(&format!("ip:{ip}"), limit).await
    {
        return Some(ApiError::too_many_requests(wait));
    }
    if is_auth_route(route)
        && let Some(limit) = live.rate_limit_auth_ip
        && let Err(wait) = state.limiter.hit(&format!("auth-ip:{ip}"), limit).await
    {
        return Some(ApiError::too_many_requests(wait));
    }
    None
}

/// Error answers made outside our handlers (an unmatched method, an extractor that
/// failed before ours ran) come with a plain-text or empty body; give them the
/// standard one.
fn with_error_body(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // JSON is the API's own; HTML is the admin UI's pages.
    let is_page = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_json || is_page {
        return res;
    }
    let message = match res.response().error() {
        Some(err) if status.is_client_error() && status != StatusCode::NOT_FOUND => {
            let text = err.to_string();
            if text.is_empty() || text.len() > 300 {
                default_message(status).to_owned()
            } else {
                text
            }
        }
        _ => default_message(status).to_owned(),
    };
    let mut replacement: HttpResponse = ApiError::new(status, message).error_response();
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replacement
                .headers_mut()
                .insert(name.clone(), value.clone());
        }
    }
    res.into_response(replacement)
}
