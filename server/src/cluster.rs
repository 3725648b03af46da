//! Several instances of one installation behaving as one: what they tell each other
//! over the cache's pub/sub, and the heartbeat the admin UI's instances page reads.
//!
//! - A schema change (or a settings save, or a function deployed, changed or
//!   deleted) made through one instance reloads it on every other at once; a commit wakes the other instances' event feeds, so their
//!   realtime subscribers hear of it without waiting for the next poll. Events
//!   themselves travel through the shared outbox, never through pub/sub: that keeps
//!   them ordered and durable, and Redis being away only slows them to the poll.
//! - A realtime client's subscriptions may be set through any instance (no sticky
//!   sessions): the instance holding its stream registers it in the cache, and another
//!   instance forwards the request there and answers with its reply.
//!
//! Without Redis all of this stays inside the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::cache::{Cache, Message, RESYNC};

/// A schema change: `data.version`.
const SCHEMA: &str = "schema";
/// Stored settings changed.
const SETTINGS: &str = "settings";
/// Functions were deployed, changed or deleted.
const FUNCTIONS: &str = "functions";
/// Events were committed.
const COMMIT: &str = "commit";
/// Set a realtime client's subscriptions on the instance holding its stream.
const SUBSCRIBE: &str = "realtime.subscribe";
/// Its answer.
const REPLY: &str = "realtime.reply";

/// How often an instance says it is alive, and how long that lasts.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const HEARTBEAT_TTL: Duration = Duration::from_secs(10);
/// How long a realtime client's registration lasts without its stream ending.
const CLIENT_TTL: Duration = Duration::from_secs(86_400);
/// How long a forwarded subscription waits for the other instance.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// The least time between two commit notices of this instance.
const COMMIT_COALESCE: Duration = Duration::from_millis(5);

/// A live instance, as its heartbeat describes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub version: String,
    pub address: String,
    pub started: DateTime<Utc>,
    pub heartbeat: DateTime<Utc>,
}

/// This instance's side of the cluster.
#[derive(Debug)]
pub struct Cluster {
    cache: Cache,
    address: String,
    started: DateTime<Utc>,
    /// Forwarded subscriptions waiting for their reply, by nonce.
    pending: Mutex<HashMap<String, oneshot::Sender<(u16, String)>>>,
}

impl Cluster {
    pub fn new(cache: Cache, address: String) -> Cluster {
        Cluster {
            cache,
            address,
            started: Utc::now(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// This instance as its heartbeat says.
    fn me(&self) -> Instance {
        Instance {
            id: self.cache.instance().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            address: self.address.clone(),
            started: self.started,
            heartbeat: Utc::now(),
        }
    }

    async fn heartbeat(&self) {
        if let Ok(text) = serde_json::to_string(&self.me()) {
            self.cache
                .set(
                    &format!("instance:{}", self.cache.instance()),
                    &text,
                    Some(HEARTBEAT_TTL),
                )
                .await;
        }
    }

    /// The live instances (heartbeat within [`HEARTBEAT_TTL`]), oldest first; this
    /// one always among them.
    pub async fn instances(&self) -> Vec<Instance> {
        let mut found: Vec<Instance> = self
            .cache
            .scan("instance:")
            .await
            .into_iter()
            .filter_map(|(_, text)| serde_json::from_str(&text).ok())
            .collect();
        if !found.iter().any(|i| i.id == self.cache.instance()) {
            found.push(self.me());
        }
        found.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        found
    }

    /// Note that this instance holds realtime client `id`'s stream.
    pub async fn client_connected(&self, id: &str) {
        if self.cache.external_name().is_some() {
            self.cache
                .set(
                    &format!("realtime:{id}"),
                    self.cache.instance(),
                    Some(CLIENT_TTL),
                )
                .await;
        }
    }

    pub async fn client_gone(&self, id: &str) {
        if self.cache.external_name().is_some() {
            self.cache.delete(&format!("realtime:{id}")).await;
        }
    }

    /// Set the subscriptions of realtime client `client_id`, held by another
    /// instance, there: its answer (status and message), or `None` when no instance
    /// holds that client (or the one that did does not answer).
    pub async fn forward_subscribe(
        &self,
        client_id: &str,
        authorization: Option<String>,
        subscriptions: &[String],
    ) -> Option<(u16, String)> {
        if !self.cache.is_shared() {
            return None;
        }
        let owner = self.cache.get(&format!("realtime:{client_id}")).await?;
        if owner == self.cache.instance() {
            return None;
        }
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(nonce.clone(), tx);
        self.cache
            .publish(
                SUBSCRIBE,
                Some(&owner),
                json!({
                    "nonce": nonce,
                    "clientId": client_id,
                    "authorization": authorization,
                    "subscriptions": subscriptions,
                }),
            )
            .await;
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, rx).await;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&nonce);
        answer.ok()?.ok()
    }

    fn replied(&self, data: &Value) {
        let nonce = field(data, "nonce").as_str().unwrap_or_default();
        let waiting = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(nonce);
        if let Some(tx) = waiting {
            let status = field(data, "status").as_u64().unwrap_or(500) as u16;
            let message = field(data, "message")
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let _ = tx.send((status, message));
        }
    }
}

/// Set a realtime client's subscriptions here, as `POST /api/realtime` does: the
/// status and message to answer with (204 and "" when done).
pub async fn subscribe_here(
    state: &AppState,
    client_id: &str,
    authorization: Option<&str>,
    subscriptions: &[String],
) -> (u16, String) {
    use crate::realtime::RealtimeError;
    let snapshot = state.schema.snapshot();
    let identity = match state.auth.identify(&snapshot, authorization).await {
        Ok(identity) => identity,
        Err(err) => {
            let err = crate::http::ApiError::from(err);
            return (err.status.as_u16(), err.message);
        }
    };
    match state.realtime.subscribe(client_id, identity, subscriptions) {
        Ok(()) => (204, String::new()),
        Err(RealtimeError::UnknownClient) => (404, "Missing or invalid client id.".to_owned()),
        Err(RealtimeError::Forbidden) => (
            403,
            "The current and the previous request authorization don't match.".to_owned(),
        ),
        Err(RealtimeError::Invalid(message)) => (400, message),
    }
}

/// Act on what other instances say, tell them what changed here, and keep this
/// instance's heartbeat, until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let listen = async {
        let mut heard = state.cache.subscribe();
        loop {
            match heard.recv().await {
                Ok(message) => handle(&state, message).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    resync(&state).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    };
    let schema = announce(
        &state,
        state.schema.changes(),
        SCHEMA,
        Duration::ZERO,
        |v| json!({"version": v}),
    );
    let settings = announce(&state, state.live.saves(), SETTINGS, Duration::ZERO, |_| {
        Value::Null
    });
    let functions = announce(
        &state,
        state.functions.changes(),
        FUNCTIONS,
        Duration::ZERO,
        |_| Value::Null,
    );
    let commits = announce(
        &state,
        state.records.commits(),
        COMMIT,
        COMMIT_COALESCE,
        |_| Value::Null,
    );
    let heartbeat = async {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            every.tick().await;
            state.cluster.heartbeat().await;
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = listen => {}
        () = schema => {}
        () = settings => {}
        () = functions => {}
        () = commits => {}
        () = heartbeat => {}
    }
    state
        .cache
        .delete(&format!("instance:{}", state.cache.instance()))
        .await;
}

/// Tell the other instances of each change `changes` reports, as a message of `kind`
/// carrying `data` of it, at most one per `coalesce`. Nothing to tell without Redis.
async fn announce<T>(
    state: &AppState,
    mut changes: tokio::sync::watch::Receiver<T>,
    kind: &str,
    coalesce: Duration,
    data: impl Fn(&T) -> Value,
) {
    if state.cache.external_name().is_none() {
        return std::future::pending().await;
    }
    while changes.changed().await.is_ok() {
        let data = data(&changes.borrow_and_update());
        if state.cache.is_shared() {
            state.cache.publish(kind, None, data).await;
        }
        tokio::time::sleep(coalesce).await;
    }
}

async fn handle(state: &AppState, message: Message) {
    let mine = message.from == state.cache.instance();
    match message.kind.as_str() {
        SCHEMA if !mine => {
            let version = field(&message.data, "version").as_i64().unwrap_or(i64::MAX);
            if state.schema.snapshot().version() < version
                && let Err(err) = state.schema.reload().await
            {
                tracing::warn!(error = %err, "reloading the schema another instance changed failed");
            }
        }
        SETTINGS if !mine => match state.live.reload().await {
            Ok(runtime) => state.realtime.set_limits(runtime.realtime),
            Err(err) => tracing::warn!(error = %err, "reloading the settings failed"),
        },
        FUNCTIONS if !mine => {
            if let Err(err) = state.functions.refresh().await {
                tracing::warn!(error = %err, "loading the functions another instance changed failed");
            }
        }
        COMMIT if !mine => state.events.wake(),
        SUBSCRIBE => {
            let data = &message.data;
            let subscriptions: Vec<String> =
                serde_json::from_value(field(data, "subscriptions").clone()).unwrap_or_default();
            let (status, text) = subscribe_here(
                state,
                field(data, "clientId").as_str().unwrap_or_default(),
                field(data, "authorization").as_str(),
                &subscriptions,
            )
            .await;
            state
                .cache
                .publish(
                    REPLY,
                    Some(&message.from),
                    json!({"nonce": field(data, "nonce"), "status": status, "message": text}),
                )
                .await;
        }
        REPLY => state.cluster.replied(&message.data),
        RESYNC => resync(state).await,
        _ => {}
    }
}

/// Messages were missed (Redis was away): read afresh what they keep current.
async fn resync(state: &AppState) {
    if let Err(err) = state.schema.reload().await {
        tracing::warn!(error = %err, "reloading the schema failed");
    }
    if let Ok(runtime) = state.live.reload().await {
        state.realtime.set_limits(runtime.realtime);
    }
    if let Err(err) = state.functions.refresh().await {
        tracing::warn!(error = %err, "reloading the functions failed");
    }
    state.records.identities().clear();
    state.events.wake();
    // Streams opened while Redis was away were registered in memory only.
    for id in state.realtime.client_ids() {
        state.cluster.client_connected(&id).await;
    }
}

/// `value[key]`, or null.
fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or(&Value::Null)
}
