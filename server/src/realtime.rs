//! Realtime, PocketBase-compatible: clients hold an SSE stream (`GET /api/realtime`)
//! and set their subscriptions (`POST /api/realtime`). Every published record event
//! goes to each subscriber whose view rule — evaluated for that subscriber, on that
//! record, deletes included — and subscription filter hold, with `expand` and
//! `fields` applied with the subscriber's own rights. A subscriber whose token key
//! rotates (a password change, revoked sessions) or whose record is deleted is
//! disconnected. Fed in-process after commit by the event dispatcher.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::events::Event;
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::records::RecordService;
use crate::records::read::{pick_fields, request_auth};

/// Messages a slow client may have queued before it is dropped.
const QUEUE: usize = 256;

/// Limits, from the settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_subscriptions: usize,
    pub max_connections_per_ip: usize,
    pub keepalive: Duration,
    /// A client with no subscriptions for this long is disconnected.
    pub idle_timeout: Duration,
}

/// One subscription: `posts/*` or `posts/ID`, with PocketBase's `options`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// As the client wrote it; events carry it as their name.
    pub topic: String,
    pub collection: String,
    /// `None` for every record (`*`).
    pub record: Option<String>,
    pub filter: Option<String>,
    pub expand: Option<String>,
    pub fields: Option<String>,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
}

impl Subscription {
    /// `COLLECTION`, `COLLECTION/*` or `COLLECTION/ID`, optionally followed by
    /// `?options=<url-encoded JSON {query: {...}, headers: {...}}>`.
    pub fn parse(topic: &str) -> Result<Subscription, String> {
        let (path, options) = match topic.split_once('?') {
            Some((path, rest)) => (path, Some(rest)),
            None => (topic, None),
        };
        let (collection, record) = match path.split_once('/') {
            Some((collection, "*")) => (collection, None),
            Some((collection, id)) => (collection, Some(id.to_owned())),
            None => (path, None),
        };
        if collection.is_empty() || collection.len() > 255 {
            return Err(format!("`{topic}` is not COLLECTION/* or COLLECTION/ID"));
        }
        let mut subscription = Subscription {
            topic: topic.to_owned(),
            collection: collection.to_owned(),
            record,
            filter: None,
            expand: None,
            fields: None,
            query: HashMap::new(),
            headers: HashMap::new(),
        };
        if let Some(options) = options {
            let raw = url::form_urlencoded::parse(options.as_bytes())
                .find(|(k, _)| k == "options")
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| format!("`{topic}`: unknown query, expected ?options=…"))?;
            let options: Value = serde_json::from_str(&raw)
                .map_err(|e| format!("`{topic}`: options are not JSON ({e})"))?;
            let strings = |value: Option<&Value>| -> HashMap<String, String> {
                value
                    .and_then(Value::as_object)
                    .map(|map| {
                        map.iter()
                            .map(|(k, v)| {
                                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                                (k.clone(), text)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            subscription.query = strings(options.get("query"));
            subscription.headers = strings(options.get("headers"))
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            subscription.filter = subscription.query.get("filter").cloned();
            subscription.expand = subscription.query.get("expand").cloned();
            subscription.fields = subscription.query.get("fields").cloned();
        }
        Ok(subscription)
    }
}

#[derive(Debug)]
struct Client {
    ip: IpAddr,
    tx: mpsc::Sender<Bytes>,
    state: Mutex<ClientState>,
}

#[derive(Debug)]
struct ClientState {
    identity: Identity,
    subscriptions: Vec<Subscription>,
    /// Since when the client has had no subscriptions.
    idle_since: Option<Instant>,
}

impl ClientState {
    /// Whether an event on this record may concern the client: one of its
    /// subscriptions names the collection, or the record is the client's own
    /// (a changed token key ends the stream). Cheap: no query, no clone.
    fn concerned(&self, event: &Target<'_>) -> bool {
        self.subscriptions
            .iter()
            .any(|s| s.collection == event.collection || s.collection == event.collection_id)
            || event.changes_own_record(&self.identity)
    }
}

/// What an event is about, for finding the clients it concerns.
struct Target<'a> {
    collection: &'a str,
    collection_id: &'a str,
    record_id: &'a str,
    action: &'a str,
}

impl Target<'_> {
    /// Whether the event updates or deletes the record `identity` is signed in as.
    fn changes_own_record(&self, identity: &Identity) -> bool {
        self.action != "created"
            && owner_of(identity).is_some_and(|(c, r)| {
                (c == self.collection_id
                    || (c == crate::identity::SUPERUSERS
                        && self.collection == crate::identity::SUPERUSERS))
                    && r == self.record_id
            })
    }
}

/// The connected clients, and how many come from each address.
#[derive(Debug, Default)]
struct Clients {
    by_id: HashMap<String, Arc<Client>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Clients {
    fn remove(&mut self, id: &str) {
        let Some(client) = self.by_id.remove(id) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&client.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&client.ip);
            }
        }
    }
}

/// Why a subscription request is refused.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("no realtime client with this id is connected")]
    UnknownClient,
    #[error("{0}")]
    Invalid(String),
    #[error("the client is signed in as someone else")]
    Forbidden,
}

/// The connected clients.
#[derive(Debug)]
pub struct Hub {
    clients: Mutex<Clients>,
    /// Changed at run time from the admin UI's settings.
    limits: arc_swap::ArcSwap<Limits>,
}

/// One SSE message.
fn message(id: Option<&str>, event: &str, data: &Value) -> Bytes {
    let mut text = String::new();
    if let Some(id) = id {
        text.push_str(&format!("id:{id}\n"));
    }
    // Event names are topics: keep them on one line.
    let event: String = event.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    text.push_str(&format!("event:{event}\ndata:{data}\n\n"));
    Bytes::from(text)
}

/// The changed record an event carries, with its hidden values (kept beside the
/// event: view rules may name them and superusers see them; `shape` strips them for
/// everyone else).
pub fn event_record(event: &Event) -> Option<Map<String, Value>> {
    let mut record = event
        .payload
        .pointer("/data/record")
        .and_then(Value::as_object)
        .cloned()?;
    record.extend(
        event
            .hidden
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Some(record)
}

/// Whether the identity's record still exists with the same token key.
async fn still_valid(
    identity: &Identity,
    collection: &str,
    id: &str,
    records: &RecordService,
) -> bool {
    let key = |record: &Map<String, Value>| record.get("tokenKey").cloned();
    let held = match identity {
        Identity::Record { record, .. } | Identity::Superuser { record } => key(record),
        _ => return true,
    };
    match records.find_by_id(collection, id).await {
        Ok(Some(current)) => key(&current) == held,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Whether `event` ends the session of `identity`: it changes the record they are
/// signed in as, and that record is gone or has a new token key (a password change,
/// revoked sessions).
pub async fn ends_session(event: &Event, identity: &Identity, records: &RecordService) -> bool {
    let Some(record) = event_record(event) else {
        return false;
    };
    let field = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (id, collection_id) = (field("id"), field("collectionId"));
    let target = Target {
        collection: &event.collection,
        collection_id: &collection_id,
        record_id: &id,
        action: &event.action,
    };
    target.changes_own_record(identity)
        && !still_valid(identity, &event.collection, &id, records).await
}

/// Who an identity is, as one string: equal for the same caller.
fn identity_key(identity: &Identity) -> String {
    match identity {
        Identity::Anonymous => String::new(),
        Identity::ApiKey(key) => format!("key:{}", key.id),
        _ => owner_of(identity).map_or_else(String::new, |(c, id)| format!("{c}:{id}")),
    }
}

/// Whose record an identity is: (collection id, record id).
fn owner_of(identity: &Identity) -> Option<(String, String)> {
    match identity {
        Identity::Record { collection, record } => Some((
            collection.id.clone(),
            record.get("id")?.as_str()?.to_owned(),
        )),
        Identity::Superuser { record } => Some((
            crate::identity::SUPERUSERS.to_owned(),
            record.get("id")?.as_str()?.to_owned(),
        )),
        _ => None,
    }
}

impl Hub {
    pub fn new(limits: Limits) -> Hub {
        Hub {
            clients: Mutex::new(Clients::default()),
            limits: arc_swap::ArcSwap::from_pointee(limits),
        }
    }

    pub fn limits(&self) -> Limits {
        **self.limits.load()
    }

    /// New limits, for connections and subscriptions from now on.
    pub fn set_limits(&self, limits: Limits) {
        self.limits.store(Arc::new(limits));
    }

    /// The clients an event may concern, picked under the lock without a query or
    /// an allocation per unconcerned client (most of 10,000 idle streams).
    fn concerned(&self, target: &Target<'_>) -> Vec<(String, Arc<Client>)> {
        let Ok(clients) = self.clients.lock() else {
            return Vec::new();
        };
        clients
            .by_id
            .iter()
            .filter(|(_, c)| c.state.lock().is_ok_and(|s| s.concerned(target)))
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Register a new client from `ip`: its id and the stream of its messages, the
    /// first being `PB_CONNECT`. `None` when the address has too many connections.
    pub fn connect(&self, ip: IpAddr) -> Option<(String, mpsc::Receiver<Bytes>)> {
        let mut clients = self.clients.lock().ok()?;
        let from_ip = clients.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits().max_connections_per_ip {
            return None;
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let hello = message(Some(&id), "PB_CONNECT", &json!({"clientId": id}));
        tx.try_send(hello).ok()?;
        *clients.per_ip.entry(ip).or_default() += 1;
        clients.by_id.insert(
            id.clone(),
            Arc::new(Client {
                ip,
                tx,
                state: Mutex::new(ClientState {
                    identity: Identity::Anonymous,
                    subscriptions: Vec::new(),
                    idle_since: Some(Instant::now()),
                }),
            }),
        );
        Some((id, rx))
    }

    /// Forget a client (its stream ended, or it is being disconnected).
    pub fn disconnect(&self, id: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(id);
        }
    }

    /// Replace a client's subscriptions, and take the identity it subscribes as.
    ///
    /// Fails with `UnknownClient`, `Invalid` (a bad topic, too many), or
    /// `Forbidden` when the client was signed in as someone else.
    pub fn subscribe(
        &self,
        client_id: &str,
        identity: Identity,
        topics: &[String],
    ) -> Result<(), RealtimeError> {
        let client = self
            .clients
            .lock()
            .ok()
            .and_then(|c| c.by_id.get(client_id).cloned())
            .ok_or(RealtimeError::UnknownClient)?;
        if topics.len() > self.limits().max_subscriptions {
            return Err(RealtimeError::Invalid(format!(
                "at most {} subscriptions per connection",
                self.limits().max_subscriptions
            )));
        }
        let subscriptions = topics
            .iter()
            .map(|t| Subscription::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(RealtimeError::Invalid)?;
        let mut state = client
            .state
            .lock()
            .map_err(|_| RealtimeError::UnknownClient)?;
        let before = owner_of(&state.identity);
        if before.is_some() && before != owner_of(&identity) {
            return Err(RealtimeError::Forbidden);
        }
        state.identity = identity;
        state.idle_since = subscriptions.is_empty().then(Instant::now);
        state.subscriptions = subscriptions;
        Ok(())
    }

    /// End every stream (shutting down: SSE streams never finish by themselves).
    pub fn close_all(&self) {
        if let Ok(mut clients) = self.clients.lock() {
            *clients = Clients::default();
        }
    }

    /// The ids of the connected clients.
    pub fn client_ids(&self) -> Vec<String> {
        self.clients
            .lock()
            .map(|c| c.by_id.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.clients.lock().map(|c| c.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Disconnect clients idle (no subscriptions) for longer than the limit.
    pub fn sweep(&self) {
        let limit = self.limits().idle_timeout;
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        let idle: Vec<String> = clients
            .by_id
            .iter()
            .filter(|(_, c)| {
                c.state
                    .lock()
                    .ok()
                    .and_then(|s| s.idle_since)
                    .is_some_and(|since| since.elapsed() >= limit)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            clients.remove(&id);
        }
    }

    /// Deliver one event to every subscriber allowed to see it.
    pub async fn deliver(&self, event: &Event, records: &RecordService) {
        let Some(record) = event_record(event) else {
            return;
        };
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let action = match event.action.as_str() {
            "created" => "create",
            "updated" => "update",
            _ => "delete",
        };
        let collection_id = record
            .get("collectionId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let target = Target {
            collection: &event.collection,
            collection_id: &collection_id,
            record_id: &id,
            action: &event.action,
        };
        // Subscribers who are the same identity with the same topic (one user's
        // tabs, one service's workers) share one access check per event.
        let mut judged: HashMap<(String, String), Option<Value>> = HashMap::new();
        for (client_id, client) in self.concerned(&target) {
            let (identity, subscriptions) = match client.state.lock() {
                Ok(state) => (state.identity.clone(), state.subscriptions.clone()),
                Err(_) => continue,
            };
            // The subscriber's own record changed: a new token key (or none) ends it.
            if target.changes_own_record(&identity)
                && !still_valid(&identity, &event.collection, &id, records).await
            {
                self.disconnect(&client_id);
                continue;
            }
            for subscription in subscriptions
                .iter()
                .filter(|s| s.collection == event.collection || s.collection == collection_id)
            {
                if subscription.record.as_ref().is_some_and(|r| *r != id) {
                    continue;
                }
                let key = (identity_key(&identity), subscription.topic.clone());
                let shaped = match judged.get(&key) {
                    Some(shaped) => shaped.clone(),
                    None => {
                        let shaped = self
                            .shape_for(&identity, subscription, event, &record, records)
                            .await;
                        judged.insert(key, shaped.clone());
                        shaped
                    }
                };
                let Some(shaped) = shaped else {
                    continue;
                };
                let data = json!({"action": action, "record": shaped});
                if client
                    .tx
                    .try_send(message(None, &subscription.topic, &data))
                    .is_err()
                {
                    // Gone, or too slow to keep up: it can reconnect.
                    self.disconnect(&client_id);
                    break;
                }
            }
        }
    }

    /// The record as this subscriber may see it, or `None` when it may not.
    async fn shape_for(
        &self,
        identity: &Identity,
        subscription: &Subscription,
        event: &Event,
        record: &Map<String, Value>,
        records: &RecordService,
    ) -> Option<Value> {
        let mut request = Request::new("GET");
        request.auth = request_auth(identity);
        request.query = subscription.query.clone();
        request.headers = subscription.headers.clone();
        // A filter that does not parse matches nothing (as before it reached a query).
        let filter =
            crate::filter::parse(subscription.filter.as_deref().unwrap_or_default()).ok()?;
        let shaped = if event.action == "deleted" {
            records
                .view_gone(
                    &event.collection,
                    record,
                    identity,
                    &request,
                    filter.as_ref(),
                )
                .await
                .ok()
                .flatten()?
        } else {
            records
                .view_event(
                    &event.collection,
                    record,
                    identity,
                    &request,
                    filter.as_ref(),
                    subscription.expand.as_deref(),
                )
                .await
                .ok()
                .flatten()?
        };
        Some(pick_fields(shaped, subscription.fields.as_deref()))
    }

    /// Feed every published event to the subscribers, until the bus closes.
    pub async fn run(
        self: Arc<Self>,
        events: crate::events::Events,
        records: RecordService,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut bus = events.subscribe();
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = sweep.tick() => self.sweep(),
                received = bus.recv() => match received {
                    Ok(event) => self.deliver(&event, &records).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "realtime fell behind the event bus");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_like_the_sdk_writes_them() {
        let s = Subscription::parse("posts/*").unwrap();
        assert_eq!(
            (s.collection.as_str(), s.record.as_deref()),
            ("posts", None)
        );
        let s = Subscription::parse("posts/abc").unwrap();
        assert_eq!(s.record.as_deref(), Some("abc"));
        assert_eq!(Subscription::parse("posts").unwrap().record, None);
        let options = url::form_urlencoded::byte_serialize(
            br#"{"query":{"filter":"n > 1","expand":"author","fields":"id"},"headers":{"X-A":"b"}}"#,
        )
        .collect::<String>();
        let s = Subscription::parse(&format!("posts/*?options={options}")).unwrap();
        assert_eq!(s.filter.as_deref(), Some("n > 1"));
        assert_eq!(s.expand.as_deref(), Some("author"));
        assert_eq!(s.fields.as_deref(), Some("id"));
        assert_eq!(s.headers.get("x-a").map(String::as_str), Some("b"));
        assert!(Subscription::parse("/x").is_err());
        assert!(Subscription::parse("posts/*?options=notjson").is_err());
        assert!(Subscription::parse("posts/*?other=1").is_err());
    }
}
