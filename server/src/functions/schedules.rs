//! Cron schedules: every instance looks at each live function's schedules every
//! [`POLL`]; a tick that came due is claimed in `_function_schedules` by moving
//! `last_tick` forward with a compare-and-set, so across several instances on one
//! database each tick runs once. A run marks the row `running_until` (its time limit
//! and a margin); a tick that comes while a run is still going is skipped and logged
//! (an invocation with outcome `skipped`). A tick more than [`LATE`] old when seen
//! was missed while no server ran: it runs once, late, if the schedule asks for it
//! (`catchUp`), else it is skipped and logged; older missed ticks are never run.
//! A new schedule starts from its deploy: no past tick runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;

use super::cron::Cron;
use super::runtime::{GuestTick, TriggerCall};
use super::{Deployed, FunctionService, finished, now_ms};
use crate::db::entities::function_schedules;

/// How often schedules are looked at.
const POLL: Duration = Duration::from_millis(500);
/// A tick older than this when first seen was missed (no server was running).
pub const LATE: Duration = Duration::from_secs(30);

impl FunctionService {
    /// Run schedules until `stop`.
    pub async fn run_schedules(self: Arc<Self>, stop: CancellationToken) {
        let mut failing = false;
        loop {
            match self.tick_schedules().await {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "function schedules cannot be read; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claim and start every tick due now (runs go on in the background).
    ///
    /// Fails when `_function_schedules` cannot be read or written.
    pub async fn tick_schedules(self: &Arc<Self>) -> Result<(), sea_orm::DbErr> {
        let conn = self.poll().conn();
        for d in self.live().values() {
            if !d.manifest.enabled || !d.worker {
                continue;
            }
            for schedule in &d.manifest.schedules {
                let Ok(cron) = Cron::parse(&schedule.cron, schedule.timezone.as_deref()) else {
                    continue;
                };
                let now = Utc::now();
                function_schedules::Entity::insert(function_schedules::ActiveModel {
                    function: Set(d.name.clone()),
                    cron: Set(schedule.cron.clone()),
                    last_tick: Set(now),
                    running_until: Set(None),
                })
                .on_conflict(
                    OnConflict::columns([
                        function_schedules::Column::Function,
                        function_schedules::Column::Cron,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
                let Some(row) =
                    function_schedules::Entity::find_by_id((d.name.clone(), schedule.cron.clone()))
                        .one(conn)
                        .await?
                else {
                    continue;
                };
                let Some(due) = cron.latest(now).filter(|due| *due > row.last_tick) else {
                    continue;
                };
                // The tick is this instance's only if it moves `last_tick` first.
                let claimed = function_schedules::Entity::update_many()
                    .col_expr(function_schedules::Column::LastTick, Expr::value(due))
                    .filter(function_schedules::Column::Function.eq(d.name.as_str()))
                    .filter(function_schedules::Column::Cron.eq(schedule.cron.as_str()))
                    .filter(function_schedules::Column::LastTick.eq(row.last_tick))
                    .exec(conn)
                    .await?;
                if claimed.rows_affected != 1 {
                    continue;
                }
                let label = format!("schedule {}", schedule.cron);
                let late = now.signed_duration_since(due)
                    > chrono::Duration::from_std(LATE).unwrap_or_default();
                if late && !schedule.catch_up {
                    self.skipped(
                        d,
                        &label,
                        "a tick missed while no server ran (catchUp is off)",
                    );
                    continue;
                }
                if row.running_until.is_some_and(|until| until > now) {
                    self.skipped(d, &label, "the previous run is still going");
                    continue;
                }
                let until = now
                    + chrono::Duration::from_std(
                        Duration::from_millis(d.manifest.limits.timeout_ms)
                            + Duration::from_secs(5),
                    )
                    .unwrap_or_default();
                function_schedules::Entity::update_many()
                    .col_expr(function_schedules::Column::RunningUntil, Expr::value(until))
                    .filter(function_schedules::Column::Function.eq(d.name.as_str()))
                    .filter(function_schedules::Column::Cron.eq(schedule.cron.as_str()))
                    .exec(conn)
                    .await?;
                let this = Arc::clone(self);
                let d = Arc::clone(d);
                let cron_text = schedule.cron.clone();
                tokio::spawn(async move {
                    let tick = GuestTick {
                        schedule: cron_text.clone(),
                        due: due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        late,
                    };
                    if let Err(e) = this.run_trigger(&d, label, TriggerCall::Tick(tick)).await {
                        tracing::warn!(function = %d.name, schedule = %cron_text, error = %e, "a scheduled run failed");
                    }
                    let done = function_schedules::Entity::update_many()
                        .col_expr(
                            function_schedules::Column::RunningUntil,
                            Expr::value(Option::<chrono::DateTime<Utc>>::None),
                        )
                        .filter(function_schedules::Column::Function.eq(d.name.as_str()))
                        .filter(function_schedules::Column::Cron.eq(cron_text.as_str()))
                        .exec(this.poll().conn())
                        .await;
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "a scheduled run's end was not recorded; the next tick may be skipped");
                    }
                });
            }
        }
        Ok(())
    }

    /// Log a tick that did not run.
    fn skipped(&self, d: &Deployed, label: &str, why: &str) {
        tracing::info!(function = %d.name, trigger = label, reason = why, "a scheduled tick was skipped");
        self.record(
            d,
            finished(
                label.to_owned(),
                super::ordered_id(),
                now_ms(),
                Duration::ZERO,
            ),
            "skipped",
            Some(why.to_owned()),
            &super::Report::default(),
        );
    }

    /// Each schedule of `d` with its next tick (for the admin UI and the API).
    pub fn next_runs(d: &Deployed) -> Vec<(String, Option<chrono::DateTime<Utc>>)> {
        d.manifest
            .schedules
            .iter()
            .map(|s| {
                let next = Cron::parse(&s.cron, s.timezone.as_deref())
                    .ok()
                    .and_then(|c| c.next(Utc::now()));
                (s.cron.clone(), next)
            })
            .collect()
    }
}
