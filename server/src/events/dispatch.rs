//! The dispatcher: drains `_outbox` in `seq` order to the broker and marks rows sent
//! only once delivered — on RabbitMQ, after the broker's publisher confirm. With
//! several instances on one PostgreSQL, rows are claimed `FOR UPDATE SKIP LOCKED`, so
//! no row is published twice in the normal case. Any failure (connection or channel
//! lost, nack, returned message, timeout) drops the connection, leaves the rows
//! unsent and retries with back-off: lapin does not reconnect by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::db::entities::outbox;
use crate::db::{Backend, Db};
use crate::telemetry::EventMetrics;

/// Rows claimed and published per round.
const BATCH: u64 = 100;
/// The longest a batch may take from publish to the last confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off after a failure: doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// With nothing committed, look at the outbox this often anyway (other instances,
/// and rows left by a failure).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// In-process subscribers that fall this far behind lose the oldest events.
const BUS_CAPACITY: usize = 4096;

/// A published record event.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq: i64,
    /// The CloudEvent id.
    pub id: String,
    pub collection: String,
    /// `created`, `updated` or `deleted`.
    pub action: String,
    /// The CloudEvent.
    pub payload: Value,
    /// The record's hidden field values: for in-process subscribers, never published.
    pub hidden: Option<serde_json::Map<String, Value>>,
}

/// Publishes the outbox; in-process subscribers get every event either way.
#[derive(Clone, Debug)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    bus: broadcast::Sender<Arc<Event>>,
    commits: Arc<Notify>,
    amqp: Option<Url>,
    exchange: String,
    retention: Duration,
    metrics: EventMetrics,
}

/// An open AMQP channel with confirms on and the exchange declared.
struct Amqp {
    connection: Connection,
    channel: Channel,
}

impl Events {
    /// `db` should be a pool of its own, so the dispatcher's polling never competes
    /// with requests (or shows in their statement counts).
    pub fn new(
        db: Db,
        commits: Arc<Notify>,
        amqp: Option<Url>,
        exchange: String,
        retention: Duration,
        metrics: EventMetrics,
    ) -> Events {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Events {
            inner: Arc::new(Inner {
                db,
                bus,
                commits,
                amqp,
                exchange,
                retention,
                metrics,
            }),
        }
    }

    /// Every event from now on, in order, after it was published.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.bus.subscribe()
    }

    /// Dispatch until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let inner = &self.inner;
        let mut amqp: Option<Amqp> = None;
        let mut backoff = BACKOFF.0;
        let mut failing = false;
        let mut pruned = Instant::now();
        loop {
            loop {
                match inner.drain_once(&mut amqp).await {
                    Ok(0) => {
                        failing = false;
                        backoff = BACKOFF.0;
                        break;
                    }
                    Ok(_) => {
                        failing = false;
                        backoff = BACKOFF.0;
                    }
                    Err(err) => {
                        if !failing {
                            tracing::warn!(error = %err, "publishing events failed; retrying with back-off");
                        }
                        failing = true;
                        inner.metrics.publish_failures.inc();
                        if let Some(open) = amqp.take() {
                            let _ = open.connection.close(200, "reconnecting".into()).await;
                        }
                        break;
                    }
                }
            }
            inner.update_gauges().await;
            if pruned.elapsed() >= Duration::from_secs(60) {
                inner.prune().await;
                pruned = Instant::now();
            }
            let wait = if failing { backoff } else { IDLE_POLL };
            if failing {
                backoff = (backoff * 2).min(BACKOFF.1);
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = inner.commits.notified(), if !failing => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(open) = amqp {
            let _ = open.connection.close(200, "shutting down".into()).await;
        }
    }
}

impl Inner {
    fn conn(&self) -> &DatabaseConnection {
        self.db.conn()
    }

    /// Claim, publish and mark one batch; how many rows were sent.
    ///
    /// PostgreSQL: the rows are claimed `FOR UPDATE SKIP LOCKED` in a transaction held
    /// through the publish, so other instances skip them. SQLite has one server per
    /// file (`App` locks it), so a plain read claims, and marking them sent is one
    /// short write: holding a transaction would make the dispatcher a writer that
    /// fails with SQLITE_BUSY whenever a request writes.
    async fn drain_once(&self, amqp: &mut Option<Amqp>) -> Result<usize, String> {
        let db = |e: sea_orm::DbErr| format!("outbox: {e}");
        let txn = match self.db.backend() {
            Backend::Postgres => Some(self.conn().begin().await.map_err(db)?),
            Backend::Sqlite => None,
        };
        let mut query = outbox::Entity::find()
            .filter(outbox::Column::Sent.is_null())
            .order_by_asc(outbox::Column::Seq)
            .limit(BATCH);
        let rows = match &txn {
            Some(txn) => {
                query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
                query.all(txn).await
            }
            None => query.all(self.conn()).await,
        }
        .map_err(db)?;
        if rows.is_empty() {
            if let Some(txn) = txn {
                txn.commit().await.map_err(db)?;
            }
            return Ok(0);
        }
        let events: Vec<Arc<Event>> = rows
            .into_iter()
            .map(|row| {
                Arc::new(Event {
                    seq: row.seq,
                    payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
                    hidden: row
                        .hidden
                        .as_deref()
                        .and_then(|h| serde_json::from_str(h).ok()),
                    id: row.id,
                    collection: row.collection,
                    action: row.action,
                })
            })
            .collect();
        let (sent, failure) = match &self.amqp {
            None => (events.len(), None),
            Some(url) => self.publish(amqp, url, &events).await,
        };
        if sent > 0 {
            let seqs: Vec<i64> = events.iter().take(sent).map(|e| e.seq).collect();
            let mark = outbox::Entity::update_many()
                .col_expr(outbox::Column::Sent, Expr::value(Utc::now()))
                .col_expr(
                    outbox::Column::Attempts,
                    Expr::col(outbox::Column::Attempts).add(1),
                )
                .filter(outbox::Column::Seq.is_in(seqs));
            match &txn {
                Some(txn) => mark.exec(txn).await,
                None => {
                    let _turn = self.db.write_turn().await.map_err(db)?;
                    mark.exec(self.conn()).await
                }
            }
            .map_err(db)?;
        }
        if let Some(txn) = txn {
            txn.commit().await.map_err(db)?;
        }
        for event in events.iter().take(sent) {
            // No subscriber is fine.
            let _ = self.bus.send(Arc::clone(event));
        }
        self.metrics.published.inc_by(sent as u64);
        match failure {
            Some(err) => Err(err),
            None => Ok(sent),
        }
    }

    /// Publish `events` in order and wait for their confirms. Returns how many, from
    /// the first, were confirmed, and the failure that stopped the rest.
    async fn publish(
        &self,
        amqp: &mut Option<Amqp>,
        url: &Url,
        events: &[Arc<Event>],
    ) -> (usize, Option<String>) {
        if amqp.is_none() {
            match self.connect(url).await {
                Ok(open) => *amqp = Some(open),
                Err(err) => return (0, Some(err)),
            }
        }
        let Some(open) = amqp.as_ref() else {
            return (0, Some("no AMQP channel".into()));
        };
        let started = Instant::now();
        let work = async {
            let mut confirms = Vec::with_capacity(events.len());
            for event in events {
                let routing_key = format!("{}.{}", event.collection, event.action);
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(event.id.as_str().into())
                    .with_content_type("application/cloudevents+json".into())
                    .with_app_id("basalt".into());
                let payload = event.payload.to_string();
                match open
                    .channel
                    .basic_publish(
                        self.exchange.as_str().into(),
                        routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        payload.as_bytes(),
                        properties,
                    )
                    .await
                {
                    Ok(confirm) => confirms.push(confirm),
                    Err(err) => {
                        return (confirms, Some(format!("publish: {err}")));
                    }
                }
            }
            (confirms, None)
        };
        let outcome = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            let (confirms, mut failure) = work.await;
            let mut confirmed = 0;
            for confirm in confirms {
                match confirm.await {
                    Ok(Confirmation::Ack(None)) if failure.is_none() => confirmed += 1,
                    Ok(Confirmation::Ack(Some(returned))) => {
                        failure.get_or_insert(format!(
                            "returned by the broker (no queue bound?): {} {}",
                            returned.reply_code, returned.reply_text
                        ));
                    }
                    Ok(Confirmation::Nack(_)) => {
                        failure.get_or_insert("nacked by the broker".to_owned());
                    }
                    Ok(Confirmation::NotRequested) => {
                        failure.get_or_insert("publisher confirms are off".to_owned());
                    }
                    Ok(Confirmation::Ack(None)) => {}
                    Err(err) => {
                        failure.get_or_insert(format!("confirm: {err}"));
                    }
                }
            }
            (confirmed, failure)
        })
        .await;
        let (confirmed, failure) =
            outcome.unwrap_or((0, Some(format!("no confirms within {PUBLISH_TIMEOUT:?}"))));
        if confirmed > 0 {
            let per_event = started.elapsed().as_secs_f64();
            for _ in 0..confirmed {
                self.metrics.confirm_seconds.observe(per_event);
            }
        }
        (confirmed, failure)
    }

    async fn connect(&self, url: &Url) -> Result<Amqp, String> {
        let properties = ConnectionProperties::default().with_connection_name("basalt".into());
        let connect = async {
            let connection = Connection::connect(url.as_str(), properties)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| format!("channel: {e}"))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| format!("confirm.select: {e}"))?;
            channel
                .exchange_declare(
                    self.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("exchange.declare: {e}"))?;
            Ok(Amqp {
                connection,
                channel,
            })
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {PUBLISH_TIMEOUT:?}")))
    }

    /// Backlog and the age of the oldest unsent event, for /metrics.
    async fn update_gauges(&self) {
        let unsent = outbox::Entity::find().filter(outbox::Column::Sent.is_null());
        let Ok(count) = unsent.clone().count(self.conn()).await else {
            return;
        };
        self.metrics
            .backlog
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        let oldest = unsent
            .order_by_asc(outbox::Column::Seq)
            .one(self.conn())
            .await
            .ok()
            .flatten()
            .map_or(0.0, |row| {
                Ord::max((Utc::now() - row.created).num_milliseconds(), 0) as f64 / 1000.0
            });
        self.metrics.oldest_unsent_seconds.set(oldest);
    }

    /// Forget sent events older than the retention.
    async fn prune(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.retention) else {
            return;
        };
        let cutoff = Utc::now() - retention;
        let _turn = match self.db.write_turn().await {
            Ok(turn) => turn,
            Err(err) => {
                tracing::warn!(error = %err, "pruning the outbox waited too long for its turn");
                return;
            }
        };
        let result = outbox::Entity::delete_many()
            .filter(outbox::Column::Sent.is_not_null())
            .filter(outbox::Column::Sent.lt(cutoff))
            .exec(self.conn())
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "pruning the outbox failed");
        }
    }
}

impl Events {
    /// Prune now (tests and operators; the dispatcher does it every minute).
    pub async fn prune(&self) {
        self.inner.prune().await;
    }

    /// Drain what is unsent now, once (tests).
    ///
    /// Fails as a publish round fails.
    pub async fn drain(&self) -> Result<usize, String> {
        let mut amqp = None;
        let mut total = 0;
        loop {
            let sent = self.inner.drain_once(&mut amqp).await?;
            if sent == 0 {
                return Ok(total);
            }
            total += sent;
        }
    }

    /// Rows still waiting to be sent.
    pub async fn backlog(&self) -> u64 {
        outbox::Entity::find()
            .filter(outbox::Column::Sent.is_null())
            .count(self.inner.conn())
            .await
            .unwrap_or(0)
    }

    /// Hand the connection trait to callers that inspect the outbox.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }
}
