//! Two loops over `_outbox`, independent of each other:
//!
//! - The **feed** hands every committed event, in `seq` order, to in-process
//!   subscribers (realtime) as soon as it is committed — on any instance sharing the
//!   database, and whether or not a broker is up.
//! - The **dispatcher** publishes to the broker and marks rows sent only once
//!   delivered — on RabbitMQ, after the broker's publisher confirm. With several
//!   instances on one PostgreSQL, rows are claimed `FOR UPDATE SKIP LOCKED`, so no row
//!   is published twice in the normal case. A message no queue is bound for comes
//!   back from the broker confirmed-but-returned: it counts as delivered (nobody asked
//!   for it) and in `basalt_events_unroutable_total`. Any other failure (connection or
//!   channel lost, nack, timeout) leaves that event unsent and holds back only its own
//!   collection — order is per collection — while the others go on; a stuck
//!   collection's oldest event is retried in turn, one per round, after the rest, and
//!   a round that delivers nothing backs off (lapin does not reconnect by itself).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
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
use tokio::sync::{broadcast, watch};
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
/// How often the backlog gauges are read (two queries; /metrics is scraped seldom).
const GAUGE_EVERY: Duration = Duration::from_millis(500);
/// In-process subscribers that fall this far behind lose the oldest events.
const BUS_CAPACITY: usize = 4096;
/// Rows the feed reads per query.
const FEED_BATCH: u64 = 500;
/// How often the feed looks for events committed by other instances (PostgreSQL);
/// this instance's own commits wake it at once.
const FEED_POLL_POSTGRES: Duration = Duration::from_millis(200);
const FEED_POLL_SQLITE: Duration = Duration::from_secs(1);
/// The least time between two feed reads woken by commits.
const FEED_COALESCE: Duration = Duration::from_millis(5);
/// On PostgreSQL a `seq` can commit after a higher one: the feed looks for a skipped
/// `seq` this long before it takes it for a rolled-back insert.
const FEED_GAP_WAIT: Duration = Duration::from_secs(30);
/// Most skipped `seq`s the feed keeps looking for.
const FEED_MAX_GAPS: usize = 10_000;

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
    commits: watch::Receiver<u64>,
    /// Another instance committed (told through the cache): read the outbox now.
    remote: tokio::sync::Notify,
    /// Collections whose oldest unsent event failed to publish, in the order they get
    /// their next try.
    stuck: Mutex<VecDeque<String>>,
    amqp: Option<Url>,
    exchange: String,
    retention: Duration,
    metrics: EventMetrics,
}

/// How one event fared at the broker.
#[derive(Clone, Debug)]
enum Outcome {
    Delivered,
    /// Confirmed, but no queue was bound for it.
    Unroutable,
    Failed(String),
}

/// What a publish round achieved.
#[derive(Debug, PartialEq)]
struct Settled {
    /// `seq`s to mark sent.
    delivered: Vec<i64>,
    /// How many of them no queue was bound for.
    unroutable: u64,
    /// Collections with an event that failed.
    failed: HashSet<String>,
    /// The first failure.
    failure: Option<String>,
}

/// Which events of a round count as delivered. Order is per collection: an event
/// after a failed one of its own collection stays unsent even if the broker took it
/// (a redelivery later keeps the order; consumers deduplicate by `message_id`).
fn settle(events: &[Arc<Event>], outcomes: Vec<Outcome>) -> Settled {
    let mut settled = Settled {
        delivered: Vec::with_capacity(events.len()),
        unroutable: 0,
        failed: HashSet::new(),
        failure: None,
    };
    for (event, outcome) in events.iter().zip(outcomes) {
        if settled.failed.contains(&event.collection) {
            continue;
        }
        match outcome {
            Outcome::Delivered => settled.delivered.push(event.seq),
            Outcome::Unroutable => {
                settled.unroutable += 1;
                settled.delivered.push(event.seq);
            }
            Outcome::Failed(err) => {
                settled.failed.insert(event.collection.clone());
                settled.failure.get_or_insert(err);
            }
        }
    }
    settled
}

/// Where the in-process feed is in the outbox.
struct Feed {
    /// The highest `seq` handed out.
    last: i64,
    /// `seq`s below `last` not seen yet (PostgreSQL), since when.
    gaps: BTreeMap<i64, Instant>,
}

/// The event an outbox row carries.
fn event_of(row: outbox::Model) -> Arc<Event> {
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
        commits: watch::Receiver<u64>,
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
                remote: tokio::sync::Notify::new(),
                stuck: Mutex::new(VecDeque::new()),
                amqp,
                exchange,
                retention,
                metrics,
            }),
        }
    }

    /// Every event committed from now on, in `seq` order, whether or not it has been
    /// published to a broker yet.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.bus.subscribe()
    }

    /// Another instance committed events: the feed reads them now instead of at its
    /// next poll.
    pub fn wake(&self) {
        self.inner.remote.notify_one();
    }

    /// Feed in-process subscribers until `stop` is cancelled.
    pub async fn run_feed(self, stop: CancellationToken) {
        let inner = &self.inner;
        let mut commits = inner.commits.clone();
        let poll = match inner.db.backend() {
            Backend::Postgres => FEED_POLL_POSTGRES,
            Backend::Sqlite => FEED_POLL_SQLITE,
        };
        // Only events committed from now on.
        let mut feed = loop {
            match inner.feed_start().await {
                Ok(feed) => break feed,
                Err(err) => {
                    tracing::warn!(error = %err, "the event feed cannot read the outbox; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(BACKOFF.1) => {}
                    }
                }
            }
        };
        let mut failing = false;
        loop {
            let read_at = Instant::now();
            loop {
                match inner.feed_once(&mut feed).await {
                    Ok(read) => {
                        failing = false;
                        if read < FEED_BATCH as usize {
                            break;
                        }
                    }
                    Err(err) => {
                        if !failing {
                            tracing::warn!(error = %err, "the event feed cannot read the outbox; retrying");
                        }
                        failing = true;
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                changed = commits.changed() => {
                    if changed.is_err() {
                        // The record service is gone: poll only.
                        tokio::time::sleep(poll).await;
                    } else {
                        // Under a stream of writes, one read per FEED_COALESCE takes
                        // every commit since: a read per commit cost more than the
                        // writes themselves.
                        tokio::time::sleep_until((read_at + FEED_COALESCE).into()).await;
                    }
                }
                () = inner.remote.notified() => {
                    tokio::time::sleep_until((read_at + FEED_COALESCE).into()).await;
                }
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Dispatch until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let inner = &self.inner;
        let mut commits = inner.commits.clone();
        let mut amqp: Option<Amqp> = None;
        let mut backoff = BACKOFF.0;
        let mut failing = false;
        let mut pruned = Instant::now();
        let mut gauged = Instant::now() - GAUGE_EVERY;
        // Without a broker, rows are written as delivered: only rows left unsent by an
        // earlier run with one are for the dispatcher, so it polls instead of waking
        // on every commit.
        let external = inner.amqp.is_some();
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
            if gauged.elapsed() >= GAUGE_EVERY {
                inner.update_gauges().await;
                gauged = Instant::now();
            }
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
                changed = commits.changed(), if !failing && external => {
                    if changed.is_err() {
                        tokio::time::sleep(wait).await;
                    }
                }
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

    /// Claim, publish and mark one batch; how many rows were delivered.
    ///
    /// PostgreSQL: the rows are claimed `FOR UPDATE SKIP LOCKED` in a transaction held
    /// through the publish, so other instances skip them. SQLite has one server per
    /// file (`App` locks it), so a plain read claims, and marking them sent is one
    /// short write: holding a transaction would make the dispatcher a writer that
    /// fails with SQLITE_BUSY whenever a request writes.
    ///
    /// The batch is the oldest unsent rows of every collection that is not stuck,
    /// then the oldest row of one stuck collection (whose turn it is), published last
    /// so that a poisonous event cannot take the channel down before the rest.
    ///
    /// Fails when nothing could be delivered and something failed (the broker is
    /// probably away): the caller backs off.
    async fn drain_once(&self, amqp: &mut Option<Amqp>) -> Result<usize, String> {
        let db = |e: sea_orm::DbErr| format!("outbox: {e}");
        let stuck: Vec<String> = self
            .stuck
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let txn = match self.db.backend() {
            Backend::Postgres => Some(self.conn().begin().await.map_err(db)?),
            Backend::Sqlite => None,
        };
        let claim = |query: sea_orm::Select<outbox::Entity>| async {
            match &txn {
                Some(txn) => {
                    query
                        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                        .all(txn)
                        .await
                }
                None => query.all(self.conn()).await,
            }
        };
        let mut rows = claim(
            outbox::Entity::find()
                .filter(outbox::Column::Sent.is_null())
                .filter(outbox::Column::Collection.is_not_in(stuck.iter().cloned()))
                .order_by_asc(outbox::Column::Seq)
                .limit(BATCH),
        )
        .await
        .map_err(db)?;
        let turn = stuck.first().cloned();
        if let Some(turn) = &turn {
            rows.extend(
                claim(
                    outbox::Entity::find()
                        .filter(outbox::Column::Sent.is_null())
                        .filter(outbox::Column::Collection.eq(turn.as_str()))
                        .order_by_asc(outbox::Column::Seq)
                        .limit(1),
                )
                .await
                .map_err(db)?,
            );
        }
        if rows.is_empty() {
            if let Some(txn) = txn {
                txn.commit().await.map_err(db)?;
            }
            // A stuck collection with nothing left to send is stuck no more.
            if let (Some(turn), Ok(mut stuck)) = (turn, self.stuck.lock()) {
                stuck.retain(|c| *c != turn);
            }
            return Ok(0);
        }
        let events: Vec<Arc<Event>> = rows.into_iter().map(event_of).collect();
        let outcomes = match &self.amqp {
            None => vec![Outcome::Delivered; events.len()],
            Some(url) => self.publish(amqp, url, &events).await,
        };
        let Settled {
            delivered,
            unroutable,
            failed,
            failure,
        } = settle(&events, outcomes);
        self.metrics.unroutable.inc_by(unroutable);
        if !delivered.is_empty() {
            let mark = outbox::Entity::update_many()
                .col_expr(outbox::Column::Sent, Expr::value(Utc::now()))
                .col_expr(
                    outbox::Column::Attempts,
                    Expr::col(outbox::Column::Attempts).add(1),
                )
                .filter(outbox::Column::Seq.is_in(delivered.iter().copied()));
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
        if let Ok(mut stuck) = self.stuck.lock() {
            if let Some(turn) = &turn {
                // Its try is over: cleared if it went out, else to the back of the line.
                stuck.retain(|c| c != turn);
                if failed.contains(turn.as_str()) {
                    stuck.push_back(turn.clone());
                }
            }
            for collection in &failed {
                if !stuck.iter().any(|c| c == collection) {
                    stuck.push_back(collection.clone());
                }
            }
        }
        self.metrics.published.inc_by(delivered.len() as u64);
        match failure {
            Some(err) if delivered.is_empty() => Err(err),
            Some(err) => {
                self.metrics.publish_failures.inc();
                tracing::warn!(error = %err, collections = ?failed, "some events could not be published; their collections wait");
                Ok(delivered.len())
            }
            None => Ok(delivered.len()),
        }
    }

    /// Where the feed starts: after the newest event committed so far.
    async fn feed_start(&self) -> Result<Feed, sea_orm::DbErr> {
        let newest = super::outbox::newest_seq(self.conn()).await?;
        Ok(Feed {
            last: newest,
            gaps: BTreeMap::new(),
        })
    }

    /// Hand the events committed since the last call to in-process subscribers, in
    /// `seq` order; how many rows were read.
    async fn feed_once(&self, feed: &mut Feed) -> Result<usize, sea_orm::DbErr> {
        let now = Instant::now();
        feed.gaps
            .retain(|_, since| now.duration_since(*since) < FEED_GAP_WAIT);
        let mut newer = outbox::Column::Seq.gt(feed.last);
        if !feed.gaps.is_empty() {
            newer = newer.or(outbox::Column::Seq.is_in(feed.gaps.keys().copied()));
        }
        let rows = outbox::Entity::find()
            .filter(newer)
            .order_by_asc(outbox::Column::Seq)
            .limit(FEED_BATCH)
            .all(self.conn())
            .await?;
        let read = rows.len();
        for row in rows {
            if row.seq > feed.last {
                // PostgreSQL hands out `seq` at insert time, so a lower one may still
                // commit: look for the skipped ones for a while. SQLite's single
                // writer commits in `seq` order.
                if self.db.backend() == Backend::Postgres {
                    let mut missing = feed.last.saturating_add(1);
                    while missing < row.seq && feed.gaps.len() < FEED_MAX_GAPS {
                        feed.gaps.insert(missing, now);
                        missing += 1;
                    }
                }
                feed.last = row.seq;
            } else {
                feed.gaps.remove(&row.seq);
            }
            // No subscriber is fine.
            let _ = self.bus.send(event_of(row));
        }
        Ok(read)
    }

    /// Publish `events` in order and wait for their confirms: one outcome per event.
    /// An event not attempted because an earlier failure broke the channel failed too.
    async fn publish(
        &self,
        amqp: &mut Option<Amqp>,
        url: &Url,
        events: &[Arc<Event>],
    ) -> Vec<Outcome> {
        let failed_all = |err: String| -> Vec<Outcome> { vec![Outcome::Failed(err); events.len()] };
        if amqp.is_none() {
            match self.connect(url).await {
                Ok(open) => *amqp = Some(open),
                Err(err) => return failed_all(err),
            }
        }
        let Some(open) = amqp.as_ref() else {
            return failed_all("no AMQP channel".into());
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
            let (confirms, broken) = work.await;
            let mut outcomes = Vec::with_capacity(events.len());
            for confirm in confirms {
                outcomes.push(match confirm.await {
                    Ok(Confirmation::Ack(None)) => Outcome::Delivered,
                    Ok(Confirmation::Ack(Some(_returned))) => Outcome::Unroutable,
                    Ok(Confirmation::Nack(_)) => Outcome::Failed("nacked by the broker".into()),
                    Ok(Confirmation::NotRequested) => {
                        Outcome::Failed("publisher confirms are off".into())
                    }
                    Err(err) => Outcome::Failed(format!("confirm: {err}")),
                });
            }
            let rest = broken.unwrap_or_else(|| "not published".into());
            outcomes.resize(events.len(), Outcome::Failed(rest));
            outcomes
        })
        .await;
        let outcomes = outcome
            .unwrap_or_else(|_| failed_all(format!("no confirms within {PUBLISH_TIMEOUT:?}")));
        let confirmed = outcomes
            .iter()
            .filter(|o| !matches!(o, Outcome::Failed(_)))
            .count();
        if confirmed > 0 {
            let per_event = started.elapsed().as_secs_f64();
            for _ in 0..confirmed {
                self.metrics.confirm_seconds.observe(per_event);
            }
        }
        if confirmed < events.len() {
            // The channel may be broken: start over on a new connection next time.
            if let Some(open) = amqp.take() {
                let _ = open.connection.close(200, "reconnecting".into()).await;
            }
        }
        outcomes
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
        // Rows a function's trigger has not been handed yet (its cursor, on the path
        // without a broker) stay, however old.
        let floor = match crate::db::entities::function_cursors::Entity::find()
            .select_only()
            .column_as(
                crate::db::entities::function_cursors::Column::Seq.min(),
                "floor",
            )
            .into_tuple::<Option<i64>>()
            .one(self.conn())
            .await
        {
            Ok(floor) => floor.flatten(),
            Err(err) => {
                tracing::warn!(error = %err, "pruning the outbox cannot read the trigger cursors");
                return;
            }
        };
        let mut prune = outbox::Entity::delete_many()
            .filter(outbox::Column::Sent.is_not_null())
            .filter(outbox::Column::Sent.lt(cutoff));
        if let Some(floor) = floor {
            prune = prune.filter(outbox::Column::Seq.lte(floor));
        }
        let result = prune.exec(self.conn()).await;
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

    /// The age of the oldest unsent row, if any.
    pub async fn oldest_unsent(&self) -> Option<chrono::Duration> {
        let oldest = outbox::Entity::find()
            .filter(outbox::Column::Sent.is_null())
            .order_by_asc(outbox::Column::Seq)
            .one(self.inner.conn())
            .await
            .ok()??;
        Some(chrono::Utc::now() - oldest.created)
    }

    /// The latest `limit` events, newest first (the admin UI shows them).
    pub async fn latest(&self, limit: u64) -> Vec<outbox::Model> {
        outbox::Entity::find()
            .order_by_desc(outbox::Column::Seq)
            .limit(limit)
            .all(self.inner.conn())
            .await
            .unwrap_or_default()
    }

    /// Hand the connection trait to callers that inspect the outbox.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, collection: &str) -> Arc<Event> {
        Arc::new(Event {
            seq,
            id: format!("e{seq}"),
            collection: collection.to_owned(),
            action: "created".to_owned(),
            payload: Value::Null,
            hidden: None,
        })
    }

    #[test]
    fn a_failure_holds_back_only_its_own_collection() {
        let events = [
            event(1, "a"),
            event(2, "b"),
            event(3, "a"),
            event(4, "c"),
            event(5, "b"),
        ];
        let settled = settle(
            &events,
            vec![
                Outcome::Delivered,
                Outcome::Failed("nacked".into()),
                Outcome::Unroutable,
                Outcome::Delivered,
                // Taken by the broker, but after b's failure: kept for later, in order.
                Outcome::Delivered,
            ],
        );
        assert_eq!(settled.delivered, vec![1, 3, 4]);
        assert_eq!(settled.unroutable, 1);
        assert_eq!(settled.failed, HashSet::from(["b".to_owned()]));
        assert_eq!(settled.failure.as_deref(), Some("nacked"));
    }

    #[test]
    fn returned_messages_count_as_delivered() {
        let events = [event(1, "a"), event(2, "a")];
        let settled = settle(&events, vec![Outcome::Unroutable, Outcome::Delivered]);
        assert_eq!(settled.delivered, vec![1, 2]);
        assert!(settled.failed.is_empty() && settled.failure.is_none());
    }
}
