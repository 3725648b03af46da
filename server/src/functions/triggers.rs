//! After-event triggers: every committed change a function subscribes to
//! (`posts.created`, `posts.*`, `*.deleted`, optionally narrowed by `filter`) is
//! handed to its `on-event` at least once, never inside the request that made it.
//!
//! Two sources, one delivery path:
//!
//! - **RabbitMQ** (`BASALT_AMQP_URL`): the durable queue `basalt.functions`, bound to
//!   the events exchange for every routing key, is consumed by every instance with
//!   manual acks and a prefetch limit, so the work spreads across instances. A
//!   message is acked once each function it concerns has either run or had its retry
//!   stored; a crash before that has the broker deliver it again.
//! - **The outbox** (no broker): each function with after-event triggers has a
//!   durable cursor in `_function_cursors` (a `seq` of `_outbox`), advanced after its
//!   events were handed over; one instance at a time holds a cursor's lease. The
//!   outbox keeps rows a cursor has not passed (pruning stops at the lowest cursor).
//!   On PostgreSQL a `seq` can commit after a higher one: a cursor waits at a gap for
//!   [`GAP_WAIT`] before taking it for a rolled-back insert.
//!
//! A failed call (an error returned, a trap, a timeout) is stored in
//! `_function_deliveries` with its next attempt's time (`backoffMs × 2^(n−1)`), and
//! retried from there by whichever instance claims it; after `maxAttempts` it is a
//! dead letter (state `dead`, the last error kept; on RabbitMQ also published to
//! `basalt.functions.dlq` with the error in its headers). Superusers list dead
//! letters and replay them, which puts them back in line for a fresh set of
//! attempts (the attempt number a function sees goes on counting).
//!
//! Order: on the outbox path a function gets events in commit order (`seq`), one at
//! a time; on RabbitMQ one instance takes them in queue order (the dispatcher
//! publishes each collection's events in commit order), one at a time, and several
//! instances share the queue, so across instances only "at least once" holds. A
//! retried event arrives after those behind it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::manifest::Trigger;
use super::runtime::{self, GuestEvent, TriggerCall};
use super::{Deployed, FunctionService, HttpFailure, failed, finished, now_ms};
use crate::db::Backend;
use crate::db::entities::{function_cursors, function_deliveries};
use crate::identity::Identity;

/// The work queue every instance consumes, for the events exchange `exchange`:
/// `basalt.functions` for the default `basalt.events` (another exchange `x` gets
/// `x.functions`, so test runs and tenants on one broker stay apart).
pub fn queue_name(exchange: &str) -> String {
    match exchange.strip_suffix(".events") {
        Some(prefix) => format!("{prefix}.functions"),
        None => format!("{exchange}.functions"),
    }
}

/// Where events a function kept failing on go (with the error): the work queue's
/// name and `.dlq`.
pub fn dead_letter_name(exchange: &str) -> String {
    format!("{}.dlq", queue_name(exchange))
}
/// Messages an instance holds unacknowledged at most.
const PREFETCH: u16 = 16;
/// How long a cursor's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(15);
/// How long a cursor waits at a `seq` gap (PostgreSQL) before passing it.
pub const GAP_WAIT: Duration = Duration::from_secs(10);
/// Outbox rows a cursor reads per round.
const CURSOR_BATCH: u64 = 200;
/// With nothing committed, cursors and retries are looked at this often.
const POLL: Duration = Duration::from_millis(250);
/// Retries claimed per round.
const RETRY_BATCH: u64 = 50;
/// Back-off between broker reconnections.
const RECONNECT: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// The functions queue's open channel and names, while the consumer is connected.
#[derive(Clone)]
pub struct Link {
    channel: lapin::Channel,
    exchange: String,
    queue: String,
    dead_letters: String,
}

/// A committed change, as triggers see it.
#[derive(Clone, Debug)]
pub struct TriggerEvent {
    /// The CloudEvent id.
    pub id: String,
    pub collection: String,
    /// `created`, `updated` or `deleted`.
    pub action: String,
    pub record_id: String,
    /// The CloudEvent.
    pub payload: Value,
}

impl TriggerEvent {
    /// The event a CloudEvent describes, if it is a record event.
    pub fn from_cloud_event(payload: Value) -> Option<TriggerEvent> {
        let text = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str);
        let id = text("/id")?.to_owned();
        let action = text("/type")?.strip_prefix("basalt.record.")?.to_owned();
        let collection = text("/data/collection")?.to_owned();
        let record_id = text("/subject")?.to_owned();
        Some(TriggerEvent {
            id,
            collection,
            action,
            record_id,
            payload,
        })
    }

    /// `{collection}.{action}`, as the invocation log names the trigger.
    pub fn trigger(&self) -> String {
        format!("{}.{}", self.collection, self.action)
    }

    fn record(&self) -> Map<String, Value> {
        match self.payload.pointer("/data/record") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }
}

/// Why a delivery attempt failed.
type Failure = String;

impl FunctionService {
    /// Live functions with after-event triggers (only the enabled ones if
    /// `enabled_only`). A deploy makes sure such a function exports `triggers`.
    fn after_functions(&self, enabled_only: bool) -> Vec<Arc<Deployed>> {
        self.live()
            .values()
            .filter(|d| {
                (d.manifest.enabled || !enabled_only)
                    && d.worker
                    && d.triggers
                        .iter()
                        .any(|t| matches!(t, Trigger::After { .. }))
            })
            .cloned()
            .collect()
    }

    /// Live, enabled functions with after-event triggers.
    fn event_functions(&self) -> Vec<Arc<Deployed>> {
        self.after_functions(true)
    }

    /// Whether `d` subscribes to `event`: a trigger matches and its filter (if any)
    /// matches the record as published.
    async fn wants(&self, d: &Deployed, event: &TriggerEvent) -> bool {
        if !d
            .triggers
            .iter()
            .any(|t| t.matches_event(&event.collection, &event.action))
        {
            return false;
        }
        let Some(filter) = d
            .manifest
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
        else {
            return true;
        };
        let Ok(records) = self.records() else {
            return false;
        };
        match records
            .filter_matches(&event.collection, &event.record(), filter)
            .await
        {
            Ok(matches) => matches,
            Err(e) => {
                tracing::warn!(function = %d.name, event = %event.id, error = %e, "a trigger's filter cannot be evaluated; the event is not delivered");
                false
            }
        }
    }

    /// Run `on-event` or `on-schedule` of `d` once, logged in `_invocations` under
    /// `trigger`.
    ///
    /// Fails with the cause (the guest's own error, a trap, the time limit).
    pub(crate) async fn run_trigger(
        &self,
        d: &Deployed,
        trigger: String,
        call: TriggerCall,
    ) -> Result<(), Failure> {
        let Some(exports) = &d.exports.triggers else {
            return Err("the component has no `triggers` export".into());
        };
        let ctx = self
            .call_ctx(
                d,
                Identity::Anonymous,
                crate::filter::compile::Request::new("POST"),
                false,
            )
            .map_err(|p| p.message)?;
        let invocation = ctx.invocation.clone();
        let started_at = now_ms();
        let started = Instant::now();
        let _permit = self.runtime.permit().await;
        let mut store = self
            .runtime
            .store(ctx, &d.manifest.limits, d.outbound.clone());
        let limit =
            Duration::from_millis(d.manifest.limits.timeout_ms) + Duration::from_millis(500);
        let result =
            tokio::time::timeout(limit, runtime::call_trigger(&mut store, exports, call)).await;
        let report = runtime::report(&mut store);
        drop(store);
        let elapsed = started.elapsed();
        let call = finished(trigger, invocation, started_at, elapsed);
        match result {
            Ok(Ok(Ok(()))) => {
                self.record(d, call, "ok", None, &report);
                Ok(())
            }
            Ok(Ok(Err(message))) => {
                let cause = format!("the function failed: {message}");
                self.record(d, call, "failed", Some(cause.clone()), &report);
                Err(cause)
            }
            Ok(Err(trap)) => {
                let (outcome, _, cause) = failed(&report, &HttpFailure::Trap(trap), 0);
                self.record(d, call, outcome, Some(cause.clone()), &report);
                Err(cause)
            }
            Err(_) => {
                // Waiting on the host (an outgoing request, say) past the time limit.
                let cause = "stopped at its time limit".to_owned();
                self.record(d, call, "timeout", Some(cause.clone()), &report);
                Err(cause)
            }
        }
    }

    /// One attempt at handing `event` to `d`.
    async fn attempt(
        &self,
        d: &Deployed,
        event: &TriggerEvent,
        attempt: u32,
    ) -> Result<(), Failure> {
        let call = TriggerCall::Event(GuestEvent {
            id: event.id.clone(),
            kind: format!("basalt.record.{}", event.action),
            collection: event.collection.clone(),
            subject: event.record_id.clone(),
            cloud_event: event.payload.to_string(),
            attempt,
        });
        self.run_trigger(d, event.trigger(), call).await
    }

    /// First delivery of `event` to every function that subscribes to it; a failure
    /// is stored for its retry.
    ///
    /// Fails when a failure cannot be stored (the event must then come again).
    pub(crate) async fn deliver(&self, event: &TriggerEvent) -> Result<(), sea_orm::DbErr> {
        for d in self.event_functions() {
            self.deliver_to(&d, event).await?;
        }
        Ok(())
    }

    async fn deliver_to(&self, d: &Deployed, event: &TriggerEvent) -> Result<(), sea_orm::DbErr> {
        if !self.wants(d, event).await {
            return Ok(());
        }
        if let Err(error) = self.attempt(d, event, 1).await {
            self.store_failure(d, event, 1, error).await?;
        }
        Ok(())
    }

    /// Store a failed attempt: for a retry after its back-off, or as a dead letter
    /// once the attempts are spent.
    async fn store_failure(
        &self,
        d: &Deployed,
        event: &TriggerEvent,
        attempts: u32,
        error: String,
    ) -> Result<(), sea_orm::DbErr> {
        let now = Utc::now();
        let next = d.manifest.retries.after_failure(attempts);
        let dead = next.is_none();
        let row = function_deliveries::ActiveModel {
            id: Set(super::ordered_id()),
            function: Set(d.name.clone()),
            event_id: Set(event.id.clone()),
            trigger: Set(event.trigger()),
            payload: Set(event.payload.to_string()),
            attempts: Set(i32::try_from(attempts).unwrap_or(i32::MAX)),
            state: Set(if dead { "dead" } else { "retry" }.into()),
            replayed: Set(0),
            due: Set(next.unwrap_or(now)),
            error: Set(Some(error.clone())),
            created: Set(now),
            updated: Set(now),
        };
        function_deliveries::Entity::insert(row)
            .exec(self.poll().conn())
            .await?;
        if dead {
            self.dead_lettered(d, event, attempts, &error).await;
        }
        Ok(())
    }

    /// A dead letter: counted, logged, and on RabbitMQ published to the dead-letter
    /// queue (best effort: the table keeps it either way).
    async fn dead_lettered(&self, d: &Deployed, event: &TriggerEvent, attempts: u32, error: &str) {
        self.metrics.dead_letter(&d.name);
        tracing::warn!(function = %d.name, event = %event.id, attempts, error, "an event was dead-lettered");
        let channel = self.amqp_link.lock().ok().and_then(|c| c.clone());
        if let Some(Link {
            channel,
            dead_letters,
            ..
        }) = channel
        {
            let mut headers = FieldTable::default();
            headers.insert(
                "x-basalt-function".into(),
                AMQPValue::LongString(d.name.clone().into()),
            );
            headers.insert(
                "x-basalt-error".into(),
                AMQPValue::LongString(error.to_owned().into()),
            );
            headers.insert("x-basalt-attempts".into(), AMQPValue::LongUInt(attempts));
            let published = channel
                .basic_publish(
                    "".into(),
                    dead_letters.as_str().into(),
                    BasicPublishOptions::default(),
                    event.payload.to_string().as_bytes(),
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id(event.id.clone().into())
                        .with_content_type("application/cloudevents+json".into())
                        .with_headers(headers),
                )
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "a dead letter was not published to RabbitMQ; it is kept in _function_deliveries");
            }
        }
    }

    /// Retry the deliveries that are due, until `stop`.
    pub async fn run_retries(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.retry_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "function retries cannot be read"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claim and run the retries due now; how many ran.
    ///
    /// Fails when `_function_deliveries` cannot be read or written.
    pub async fn retry_due(&self) -> Result<usize, sea_orm::DbErr> {
        let now = Utc::now();
        let due = function_deliveries::Entity::find()
            .filter(function_deliveries::Column::State.eq("retry"))
            .filter(function_deliveries::Column::Due.lte(now))
            .order_by_asc(function_deliveries::Column::Due)
            .limit(RETRY_BATCH)
            .all(self.poll().conn())
            .await?;
        let live = self.live();
        let mut ran = 0;
        for row in due {
            // Claimed by moving its due time past a lease: one instance runs it.
            let claimed = function_deliveries::Entity::update_many()
                .col_expr(
                    function_deliveries::Column::Due,
                    Expr::value(now + chrono::Duration::from_std(LEASE).unwrap_or_default()),
                )
                .filter(function_deliveries::Column::Id.eq(row.id.as_str()))
                .filter(function_deliveries::Column::State.eq("retry"))
                .filter(function_deliveries::Column::Due.eq(row.due))
                .exec(self.poll().conn())
                .await?;
            if claimed.rows_affected != 1 {
                continue;
            }
            ran += 1;
            let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
            let event = serde_json::from_str(&row.payload)
                .ok()
                .and_then(TriggerEvent::from_cloud_event);
            let spent = u32::try_from(row.attempts - row.replayed)
                .unwrap_or(0)
                .saturating_add(1);
            let outcome = match (live.get(&row.function), &event) {
                (Some(d), Some(event)) if d.manifest.enabled && d.worker => self
                    .attempt(d, event, attempt)
                    .await
                    .map_err(|e| (e, Some(d))),
                (Some(d), Some(_)) if !d.manifest.enabled => {
                    Err(("the function is disabled".to_owned(), Some(d)))
                }
                (_, None) => Err(("the stored event does not parse".to_owned(), None)),
                _ => Err(("the function is gone".to_owned(), None)),
            };
            match outcome {
                Ok(()) => {
                    function_deliveries::Entity::delete_by_id(row.id)
                        .exec(self.poll().conn())
                        .await?;
                }
                Err((error, d)) => {
                    // A gone function's event is dead at once.
                    let next = d.and_then(|d| d.manifest.retries.after_failure(spent));
                    let dead = next.is_none();
                    function_deliveries::Entity::update_many()
                        .col_expr(
                            function_deliveries::Column::Attempts,
                            Expr::value(i32::try_from(attempt).unwrap_or(i32::MAX)),
                        )
                        .col_expr(
                            function_deliveries::Column::State,
                            Expr::value(if dead { "dead" } else { "retry" }),
                        )
                        .col_expr(
                            function_deliveries::Column::Due,
                            Expr::value(next.unwrap_or_else(Utc::now)),
                        )
                        .col_expr(
                            function_deliveries::Column::Error,
                            Expr::value(error.clone()),
                        )
                        .col_expr(
                            function_deliveries::Column::Updated,
                            Expr::value(Utc::now()),
                        )
                        .filter(function_deliveries::Column::Id.eq(row.id.as_str()))
                        .exec(self.poll().conn())
                        .await?;
                    if dead && let (Some(d), Some(event)) = (d, &event) {
                        self.dead_lettered(d, event, attempt, &error).await;
                    }
                }
            }
        }
        Ok(ran)
    }

    /// Dead letters (and retries waiting), newest first; of one function if given.
    ///
    /// Fails when `_function_deliveries` cannot be read.
    pub async fn deliveries(
        &self,
        function: Option<&str>,
        state: Option<&str>,
        limit: u64,
    ) -> Result<Vec<function_deliveries::Model>, sea_orm::DbErr> {
        let mut query = function_deliveries::Entity::find()
            .order_by_desc(function_deliveries::Column::Updated)
            .limit(limit);
        if let Some(function) = function {
            query = query.filter(function_deliveries::Column::Function.eq(function));
        }
        if let Some(state) = state {
            query = query.filter(function_deliveries::Column::State.eq(state));
        }
        query.all(self.poll().conn()).await
    }

    /// Put dead letter `id` back in line: a fresh set of `maxAttempts`, the first
    /// now (the attempt numbers a function sees go on counting). Returns the row as
    /// replayed, `None` when there is no such dead letter.
    ///
    /// Fails when `_function_deliveries` cannot be written.
    pub async fn replay(
        &self,
        id: &str,
    ) -> Result<Option<function_deliveries::Model>, sea_orm::DbErr> {
        let now = Utc::now();
        let done = function_deliveries::Entity::update_many()
            .col_expr(function_deliveries::Column::State, Expr::value("retry"))
            .col_expr(
                function_deliveries::Column::Replayed,
                Expr::col(function_deliveries::Column::Attempts),
            )
            .col_expr(function_deliveries::Column::Due, Expr::value(now))
            .col_expr(function_deliveries::Column::Updated, Expr::value(now))
            .filter(function_deliveries::Column::Id.eq(id))
            .filter(function_deliveries::Column::State.eq("dead"))
            .exec(self.poll().conn())
            .await?;
        if done.rows_affected == 0 {
            return Ok(None);
        }
        function_deliveries::Entity::find_by_id(id.to_owned())
            .one(self.poll().conn())
            .await
    }

    /// Drop dead letter or retry `id`; whether there was one.
    ///
    /// Fails when `_function_deliveries` cannot be written.
    pub async fn discard(&self, id: &str) -> Result<bool, sea_orm::DbErr> {
        let done = function_deliveries::Entity::delete_by_id(id.to_owned())
            .exec(self.poll().conn())
            .await?;
        Ok(done.rows_affected > 0)
    }

    /// Hand outbox events to after-event triggers (the path without a broker), until
    /// `stop`: woken by this instance's commits, else every [`POLL`].
    pub async fn run_cursors(self: Arc<Self>, instance: String, stop: CancellationToken) {
        let mut commits = match self.records.get() {
            Some((records, _)) => records.commits(),
            None => return,
        };
        let mut failing = false;
        let mut cleaned = None;
        loop {
            match self.advance_cursors(&instance, &mut cleaned).await {
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "after-event triggers cannot read the outbox; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = commits.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One round over every cursor this instance holds or can take; how many events
    /// were handed over. `cleaned` is the set of functions cursors were last kept
    /// for: cursors of functions that left it (deleted, or without after-event
    /// triggers now) are dropped, as they would hold back the outbox's pruning.
    ///
    /// Fails when the outbox or the cursors cannot be read or written.
    pub async fn advance_cursors(
        &self,
        instance: &str,
        cleaned: &mut Option<Vec<String>>,
    ) -> Result<usize, sea_orm::DbErr> {
        // Disabled functions' cursors move on too: like a function without a broker
        // queue, a disabled one misses what happens meanwhile (as on RabbitMQ).
        let functions = self.after_functions(false);
        let mut names: Vec<String> = functions.iter().map(|d| d.name.clone()).collect();
        names.sort_unstable();
        if cleaned.as_ref() != Some(&names) {
            // Only functions that had after-event triggers and have them no more (a
            // deploy in progress has a cursor before it is live: it is kept). At the
            // first round, cursors of functions not live at all.
            let delete = function_cursors::Entity::delete_many();
            let delete = match cleaned.as_ref() {
                Some(before) => delete.filter(
                    function_cursors::Column::Function
                        .is_in(before.iter().filter(|n| !names.contains(n)).cloned()),
                ),
                None => delete.filter(
                    function_cursors::Column::Function
                        .is_not_in(self.live().keys().cloned().collect::<Vec<_>>()),
                ),
            };
            delete.exec(self.poll().conn()).await?;
            // New here: a cursor from now on unless its deploy made one (one made
            // straight in the database, by the CLI, has none).
            for name in names
                .iter()
                .filter(|n| cleaned.as_ref().is_none_or(|before| !before.contains(n)))
            {
                self.start_cursor(name).await?;
            }
            *cleaned = Some(names);
        }
        let mut handed = 0;
        for d in functions {
            handed += self.advance_cursor(&d, instance).await?;
        }
        Ok(handed)
    }

    async fn advance_cursor(&self, d: &Deployed, instance: &str) -> Result<usize, sea_orm::DbErr> {
        let conn = self.poll().conn();
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let claimed = function_cursors::Entity::update_many()
            .col_expr(function_cursors::Column::Owner, Expr::value(instance))
            .col_expr(
                function_cursors::Column::LeaseUntil,
                Expr::value(lease_until),
            )
            .filter(function_cursors::Column::Function.eq(d.name.as_str()))
            .filter(
                function_cursors::Column::Owner
                    .eq(instance)
                    .or(function_cursors::Column::LeaseUntil.is_null())
                    .or(function_cursors::Column::LeaseUntil.lt(now)),
            )
            .exec(conn)
            .await?;
        if claimed.rows_affected != 1 {
            return Ok(0);
        }
        let Some(cursor) = function_cursors::Entity::find_by_id(d.name.clone())
            .one(conn)
            .await?
        else {
            return Ok(0);
        };
        let rows = crate::events::outbox::after(conn, cursor.seq, CURSOR_BATCH).await?;
        let postgres = self.poll().backend() == Backend::Postgres;
        let mut last = cursor.seq;
        let mut handed = 0;
        for row in rows {
            // A skipped `seq` may still commit (PostgreSQL): wait for it a while.
            if postgres
                && row.seq != last + 1
                && now.signed_duration_since(row.created)
                    < chrono::Duration::from_std(GAP_WAIT).unwrap_or_default()
            {
                break;
            }
            let event = serde_json::from_str(&row.payload)
                .ok()
                .and_then(TriggerEvent::from_cloud_event);
            if let Some(event) = event
                && d.manifest.enabled
            {
                self.deliver_to(d, &event).await?;
                handed += 1;
            }
            last = row.seq;
        }
        if last != cursor.seq {
            function_cursors::Entity::update_many()
                .col_expr(function_cursors::Column::Seq, Expr::value(last))
                .filter(function_cursors::Column::Function.eq(d.name.as_str()))
                .filter(function_cursors::Column::Owner.eq(instance))
                .exec(conn)
                .await?;
        }
        Ok(handed)
    }

    /// Give function `name` a cursor at the newest event, unless it has one.
    ///
    /// Fails when the outbox or the cursors cannot be read or written.
    pub(crate) async fn start_cursor(&self, name: &str) -> Result<(), sea_orm::DbErr> {
        let conn = self.poll().conn();
        let newest = crate::events::outbox::newest_seq(conn).await?;
        function_cursors::Entity::insert(function_cursors::ActiveModel {
            function: Set(name.to_owned()),
            seq: Set(newest),
            owner: Set(None),
            lease_until: Set(None),
        })
        .on_conflict(
            OnConflict::column(function_cursors::Column::Function)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }

    /// Whether any live, enabled function has after-event triggers (the functions
    /// queue is bound to the events exchange only then, so events nobody asked for
    /// stay unroutable, as the dispatcher counts them).
    fn wants_queue(&self) -> bool {
        !self.event_functions().is_empty()
    }

    /// Bind or unbind the functions queue to match [`Self::wants_queue`] (nothing
    /// without a connected consumer: it does so when it connects). Bindings are
    /// durable: they outlive broker restarts, so no event published while the
    /// consumer reconnects is lost to a trigger.
    pub(crate) async fn sync_binding(&self) {
        let Some(link) = self.amqp_link.lock().ok().and_then(|l| l.clone()) else {
            return;
        };
        let wanted = self.wants_queue();
        if wanted == self.queue_bound.load(Ordering::Acquire) {
            return;
        }
        let done = if wanted {
            link.channel
                .queue_bind(
                    link.queue.as_str().into(),
                    link.exchange.as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        } else {
            link.channel
                .queue_unbind(
                    link.queue.as_str().into(),
                    link.exchange.as_str().into(),
                    "#".into(),
                    FieldTable::default(),
                )
                .await
        };
        match done {
            Ok(()) => self.queue_bound.store(wanted, Ordering::Release),
            Err(e) => {
                tracing::warn!(error = %e, "the functions queue's binding could not be changed")
            }
        }
    }

    /// Consume `basalt.functions` on RabbitMQ until `stop`, reconnecting with
    /// back-off whenever the broker goes away.
    pub async fn run_queue(self: Arc<Self>, url: Url, exchange: String, stop: CancellationToken) {
        let mut backoff = RECONNECT.0;
        loop {
            let result = tokio::select! {
                () = stop.cancelled() => return,
                r = self.consume(&url, &exchange, &stop) => r,
            };
            if let Ok(mut channel) = self.amqp_link.lock() {
                *channel = None;
            }
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the functions queue is unavailable; reconnecting");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT.1);
        }
    }

    /// One connection's consumption; returns when `stop` is cancelled.
    ///
    /// Fails when the broker cannot be reached or the connection drops.
    async fn consume(
        &self,
        url: &Url,
        exchange: &str,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let amqp = |e: lapin::Error| e.to_string();
        let connection = Connection::connect(url.as_str(), ConnectionProperties::default())
            .await
            .map_err(amqp)?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let queue = queue_name(exchange);
        let dead_letters = dead_letter_name(exchange);
        channel
            .queue_declare(queue.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(amqp)?;
        channel
            .queue_declare(dead_letters.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(amqp)?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(amqp)?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                format!("basalt-{}", super::random_id()).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        if let Ok(mut link) = self.amqp_link.lock() {
            *link = Some(Link {
                channel: channel.clone(),
                exchange: exchange.to_owned(),
                queue: queue.clone(),
                dead_letters: dead_letters.clone(),
            });
        }
        // Bound (or unbound: a binding outlives restarts) to match the functions now.
        self.queue_bound
            .store(!self.wants_queue(), Ordering::Release);
        self.sync_binding().await;
        loop {
            let delivery = tokio::select! {
                () = stop.cancelled() => {
                    let _ = connection.close(200, "shutting down".into()).await;
                    return Ok(());
                }
                () = self.live_changed.notified() => {
                    self.sync_binding().await;
                    continue;
                }
                next = consumer.next() => next,
            };
            let Some(delivery) = delivery else {
                return Err("the consumer was cancelled by the broker".into());
            };
            let delivery = delivery.map_err(amqp)?;
            let event = serde_json::from_slice(&delivery.data)
                .ok()
                .and_then(TriggerEvent::from_cloud_event);
            let Some(event) = event else {
                tracing::warn!("a message on the functions queue is not a record event; dropped");
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(amqp)?;
                continue;
            };
            match self.deliver(&event).await {
                Ok(()) => {
                    delivery
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(amqp)?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, event = %event.id, "a failed trigger call cannot be stored; the event goes back to the queue");
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await
                        .map_err(amqp)?;
                    tokio::time::sleep(RECONNECT.0).await;
                }
            }
        }
    }
}

/// A delivery row as the API shows it.
pub fn delivery_json(row: &function_deliveries::Model) -> Value {
    serde_json::json!({
        "id": row.id,
        "function": row.function,
        "eventId": row.event_id,
        "trigger": row.trigger,
        "attempts": row.attempts,
        "replayed": row.replayed,
        "state": row.state,
        "due": row.due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "error": row.error,
        "event": serde_json::from_str::<Value>(&row.payload).unwrap_or(Value::Null),
        "created": row.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "updated": row.updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_events_are_read_from_cloud_events() {
        let payload = crate::events::outbox::cloud_event(
            "e1",
            "posts",
            crate::events::outbox::Action::Updated,
            "p1",
            &serde_json::json!({"id": "p1", "title": "x"}),
            None,
        );
        let event = TriggerEvent::from_cloud_event(payload).unwrap();
        assert_eq!(event.trigger(), "posts.updated");
        assert_eq!(event.record_id, "p1");
        assert_eq!(event.record()["title"], "x");
        assert!(TriggerEvent::from_cloud_event(serde_json::json!({"id": "x"})).is_none());
    }
}
