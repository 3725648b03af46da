//! `/graphql`: queries and mutations over `POST` (JSON, or `application/graphql`)
//! and `GET` (`?query=`, queries only), subscriptions over a WebSocket speaking
//! `graphql-transport-ws` (or the older `graphql-ws`), the explorer for browsers, and
//! `GET /graphql/schema.graphql`. Everything else is the `graphql` service's.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use async_graphql::http::{WebSocket, WsMessage};
use async_graphql::parser::types::OperationType;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::error::ApiError;
use super::identity::Caller;
use crate::AppState;
use crate::graphql::{Caller as GqlCaller, Session};
use crate::identity::Identity;

fn caller(state: &AppState, req: &HttpRequest, identity: Identity) -> GqlCaller {
    GqlCaller {
        identity,
        headers: super::records::rule_headers(req),
        batch_max: state.live.current().batch_max_requests,
        session: None,
    }
}

fn json(body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `POST /graphql`: one operation, or a list of them (batched queries).
pub async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let batch: async_graphql::BatchRequest = if content_type.starts_with("application/graphql") {
        let query = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("The query is not UTF-8 text."))?;
        async_graphql::BatchRequest::Single(async_graphql::Request::new(query))
    } else if content_type.starts_with("application/json") || content_type.is_empty() {
        let bad = |e: serde_json::Error| {
            ApiError::bad_request(format!(
                "The body is not a GraphQL request ({{\"query\": …, \"variables\": …}}): {e}."
            ))
        };
        // One operation or a list: decided by the first byte rather than by serde's
        // untagged enum, which buffers the whole body to try each shape in turn.
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            async_graphql::BatchRequest::Batch(serde_json::from_slice(&body).map_err(bad)?)
        } else {
            async_graphql::BatchRequest::Single(serde_json::from_slice(&body).map_err(bad)?)
        }
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the operation as application/json (or application/graphql).",
        ));
    };
    match batch {
        async_graphql::BatchRequest::Single(request) => {
            let response = state
                .graphql
                .execute(caller(&state, &req, who.0), request)
                .await;
            Ok(json(&response))
        }
        async_graphql::BatchRequest::Batch(requests) => {
            let limits = state.graphql.limits();
            if requests.len() > limits.max_root_fields {
                return Err(ApiError::bad_request(format!(
                    "A batch holds at most {} operations.",
                    limits.max_root_fields
                )));
            }
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(
                    state
                        .graphql
                        .execute(caller(&state, &req, who.0.clone()), request)
                        .await,
                );
            }
            Ok(json(&responses))
        }
    }
}

/// Whether `query` holds a mutation or subscription (refused over `GET`).
fn writes(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty != OperationType::Query)
    })
}

#[derive(serde::Deserialize)]
pub struct GetParams {
    query: Option<String>,
    variables: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

/// `GET /graphql`: a WebSocket upgrade, a query in the URL, or the explorer.
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    params: web::Query<GetParams>,
) -> Result<HttpResponse, ApiError> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return websocket(state, req, payload).await;
    }
    let Some(query) = params.query.clone() else {
        return Ok(explorer());
    };
    if writes(&query) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Mutations and subscriptions are not run over GET; POST them.",
        ));
    }
    let mut request = async_graphql::Request::new(query);
    if let Some(variables) = params.variables.as_deref().filter(|v| !v.is_empty()) {
        let value: serde_json::Value = serde_json::from_str(variables)
            .map_err(|e| ApiError::bad_request(format!("`variables` is not JSON: {e}.")))?;
        request = request.variables(async_graphql::Variables::from_json(value));
    }
    if let Some(name) = params.operation_name.clone() {
        request = request.operation_name(name);
    }
    let who = Caller::extract(&req).await?.0;
    let response = state
        .graphql
        .execute(caller(&state, &req, who), request)
        .await;
    Ok(json(&response))
}

/// `GET /graphql/schema.graphql`: the SDL as the caller's schema has it.
pub async fn sdl(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, ApiError> {
    let built = state
        .graphql
        .current(who.0.is_superuser())
        .map_err(|p| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, p.message))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(built.schema.sdl()))
}

/// The explorer page: the admin UI's look, a query editor and the schema, with no
/// script or style from anywhere but this binary.
fn explorer() -> HttpResponse {
    use basalt_admin_ui::Template;
    let page = basalt_admin_ui::Explorer::default();
    match page.render() {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::REFERRER_POLICY, "same-origin"))
            .body(html),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// The executor of one WebSocket connection: operations run as the identity the
/// connection signed in with (its `Authorization` header, or `connection_init`).
#[derive(Clone)]
struct Connection {
    state: web::Data<AppState>,
    identity: Arc<Mutex<Identity>>,
    headers: Arc<HashMap<String, String>>,
    session: Session,
}

impl Connection {
    fn caller(&self) -> GqlCaller {
        GqlCaller {
            identity: self
                .identity
                .lock()
                .map(|i| i.clone())
                .unwrap_or(Identity::Anonymous),
            headers: (*self.headers).clone(),
            batch_max: self.state.live.current().batch_max_requests,
            session: Some(self.session.clone()),
        }
    }
}

impl async_graphql::Executor for Connection {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.state.graphql.execute(self.caller(), request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        _session: Option<Arc<async_graphql::Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        self.state.graphql.execute_stream(self.caller(), request)
    }
}

/// Close codes of graphql-transport-ws.
const FORBIDDEN: u16 = 4403;

/// The token a `connection_init` payload carries: `{"Authorization": "…"}` (any
/// case), `{"headers": {"Authorization": "…"}}` or `{"token": "…"}`.
fn init_token(payload: &serde_json::Value) -> Option<String> {
    let object = payload.as_object()?;
    let find = |o: &serde_json::Map<String, serde_json::Value>| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization") || k == &"token")
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    };
    find(object).or_else(|| object.get("headers")?.as_object().and_then(find))
}

async fn websocket(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let ip = req
        .extensions()
        .get::<super::middleware::ClientIp>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0);
    let limits = state.realtime.limits();
    let slot = state
        .graphql
        .connect(ip, limits.max_connections_per_ip)
        .ok_or_else(|| ApiError::too_many_requests(std::time::Duration::from_secs(60)))?;
    let identity = Caller::extract(&req).await?.0;
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find_map(|p| p.parse::<async_graphql::http::WebSocketProtocols>().ok())
        })
        .unwrap_or(async_graphql::http::WebSocketProtocols::GraphQLWS);
    let (response, mut session, incoming) =
        actix_ws::handle_with_protocols(&req, payload, &[protocol.sec_websocket_protocol()])
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let connection = Connection {
        state: state.clone(),
        identity: Arc::new(Mutex::new(identity)),
        headers: Arc::new(super::records::rule_headers(&req)),
        session: Session {
            events: state.events.clone(),
            subscriptions: Arc::new(AtomicUsize::new(0)),
            max_subscriptions: limits.max_subscriptions,
        },
    };
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    let texts = incoming.filter_map(move |message| {
        let pong_tx = pong_tx.clone();
        async move {
            match message {
                Ok(actix_ws::Message::Text(text)) => Some(text.into_bytes()),
                Ok(actix_ws::Message::Binary(bytes)) => Some(bytes),
                Ok(actix_ws::Message::Ping(bytes)) => {
                    let _ = pong_tx.send(bytes);
                    None
                }
                _ => None,
            }
        }
    });
    // The stream of texts ends at a close frame or an error: take until then.
    let init = connection.clone();
    let init_state = state.clone();
    let mut outgoing = WebSocket::new(connection.clone(), texts, protocol)
        .on_connection_init(move |payload| async move {
            if let Some(token) = init_token(&payload) {
                let who = init_state
                    .auth
                    .identify(&init_state.schema.snapshot(), Some(&token))
                    .await
                    .map_err(|_| async_graphql::Error::new("The token is not valid."))?;
                if let Ok(mut identity) = init.identity.lock() {
                    *identity = who;
                }
            }
            Ok(async_graphql::Data::default())
        })
        .keepalive_timeout(None)
        .boxed_local();
    let events = state.events.subscribe();
    let watcher = connection.clone();
    actix_web::rt::spawn(async move {
        let _slot = slot;
        let mut events = events;
        loop {
            tokio::select! {
                message = outgoing.next() => match message {
                    Some(WsMessage::Text(text)) => {
                        if session.text(text).await.is_err() {
                            break;
                        }
                    }
                    Some(WsMessage::Close(code, reason)) => {
                        let _ = session
                            .close(Some(actix_ws::CloseReason {
                                code: code.into(),
                                description: Some(reason),
                            }))
                            .await;
                        return;
                    }
                    None => break,
                },
                Some(bytes) = pong_rx.recv() => {
                    if session.pong(&bytes).await.is_err() {
                        break;
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        let identity = watcher
                            .identity
                            .lock()
                            .map(|i| i.clone())
                            .unwrap_or(Identity::Anonymous);
                        if crate::realtime::ends_session(&event, &identity, &watcher.state.records).await {
                            let _ = session
                                .close(Some(actix_ws::CloseReason {
                                    code: FORBIDDEN.into(),
                                    description: Some("The session ended (token revoked).".into()),
                                }))
                                .await;
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}
