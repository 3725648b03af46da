//! A function's manifest: its name, triggers, scopes and limits, as deployed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validation::FieldErrors;

/// Limits of one call. Every bound holds per call; defaults are safe for a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Limits {
    /// Wall-clock time a call may run (its CPU time while it runs), in ms.
    pub timeout_ms: u64,
    /// Linear memory a call may grow to, in MiB.
    pub memory_mb: u64,
    /// Bytes an HTTP response body (or a hook's changed values) may have, in KiB.
    pub output_kb: u64,
    /// Host calls (`records.*`, `log.write`, …) a call may make.
    pub host_calls: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout_ms: 1_000,
            memory_mb: 64,
            output_kb: 1_024,
            host_calls: 1_000,
        }
    }
}

/// The most any function may ask for.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
pub const MAX_MEMORY_MB: u64 = 512;
pub const MAX_OUTPUT_KB: u64 = 16 * 1024;
pub const MAX_HOST_CALLS: u32 = 100_000;
pub const MAX_ATTEMPTS: u32 = 25;

/// When a function runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `http`: requests to `/api/functions/{name}/…`.
    Http,
    /// `{collection|*}.{created|updated|deleted|*}`: after a change is committed.
    After {
        /// A collection's name, or `*` for every collection.
        collection: String,
        /// `created`, `updated` or `deleted`; `None` for `*`.
        action: Option<String>,
    },
    /// `{collection}.before-create` (or `*.before-create`), and update and delete.
    Before {
        /// A collection's name, or `*` for every collection.
        collection: String,
        op: crate::records::HookOp,
    },
}

impl Trigger {
    /// Parse `http`, `{collection|*}.before-{create|update|delete}` or
    /// `{collection|*}.{created|updated|deleted|*}`.
    pub fn parse(text: &str) -> Option<Trigger> {
        use crate::records::HookOp;
        if text == "http" {
            return Some(Trigger::Http);
        }
        let (collection, event) = text.rsplit_once('.')?;
        let valid = collection == "*"
            || (!collection.is_empty()
                && collection
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            return None;
        }
        let collection = collection.to_owned();
        let op = match event {
            "before-create" => HookOp::Create,
            "before-update" => HookOp::Update,
            "before-delete" => HookOp::Delete,
            "created" | "updated" | "deleted" => {
                return Some(Trigger::After {
                    collection,
                    action: Some(event.to_owned()),
                });
            }
            "*" => {
                return Some(Trigger::After {
                    collection,
                    action: None,
                });
            }
            _ => return None,
        };
        Some(Trigger::Before { collection, op })
    }

    /// Whether a committed `action` on `collection` fires this trigger.
    pub fn matches_event(&self, collection: &str, action: &str) -> bool {
        match self {
            Trigger::After {
                collection: c,
                action: a,
            } => (c == "*" || c == collection) && a.as_deref().is_none_or(|a| a == action),
            _ => false,
        }
    }

    /// Whether a write of `op` to `collection` fires this trigger.
    pub fn fires(&self, collection: &str, op: crate::records::HookOp) -> bool {
        match self {
            Trigger::Http | Trigger::After { .. } => false,
            Trigger::Before {
                collection: c,
                op: o,
            } => *o == op && (c == "*" || c == collection),
        }
    }
}

/// What a deploy sends with the component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub triggers: Vec<String>,
    /// The service identity's scopes, as an API key's: `"superuser"` or
    /// `[{"collection": …, "operations": […]}]`; none: no service identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Value>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// After-event triggers fire only for records this filter (the filter language,
    /// on the record as committed) matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// How a failed after-event call is retried before it is dead-lettered.
    #[serde(default)]
    pub retries: Retries,
    /// Cron schedules the function runs on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Where the function may send HTTP requests: `scheme://host:port` patterns
    /// (`*.example.com` matches subdomains; the port may be `*`). None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<String>,
}

/// Retries of a failed after-event call: attempt `n + 1` waits `backoffMs × 2^(n−1)`
/// (at most an hour); after `maxAttempts` the event is dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Retries {
    pub max_attempts: u32,
    pub backoff_ms: u64,
}

impl Default for Retries {
    fn default() -> Retries {
        Retries {
            max_attempts: 5,
            backoff_ms: 1_000,
        }
    }
}

impl Retries {
    /// After the `spent`-th attempt of this budget failed: when the next one is due,
    /// or `None` when the event is dead-lettered.
    pub fn after_failure(&self, spent: u32) -> Option<chrono::DateTime<chrono::Utc>> {
        (spent < self.max_attempts).then(|| {
            chrono::Utc::now() + chrono::Duration::from_std(self.delay(spent)).unwrap_or_default()
        })
    }

    /// How long to wait before attempt `attempt + 1`, after `attempt` failed.
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        std::time::Duration::from_millis(self.backoff_ms.saturating_mul(factor).min(3_600_000))
    }
}

/// A cron schedule: `cron` has five fields (minute hour day month weekday) or six
/// with seconds first; `timezone` is an IANA name (UTC when absent); with `catchUp`,
/// a tick missed while no server ran is run once at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schedule {
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub catch_up: bool,
}

fn enabled() -> bool {
    true
}

/// Whether `name` may name a function: 1–64 of `a-z 0-9 _ -`, starting with a letter,
/// and not `invocations` or `deliveries` (routes of the invocation log and of retries
/// and dead letters).
pub fn valid_name(name: &str) -> bool {
    name != "invocations"
        && name != "deliveries"
        && (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Manifest {
    /// The parsed triggers, or the field errors of those that do not parse, of bad
    /// names and of limits out of range.
    ///
    /// Fails with the per-field problems found.
    pub fn check(&self) -> Result<Vec<Trigger>, FieldErrors> {
        let mut errors = FieldErrors::default();
        if !valid_name(&self.name) {
            errors.add(
                "name",
                "validation_invalid_value",
                "1–64 characters of a-z, 0-9, `_` and `-`, starting with a letter.".into(),
            );
        }
        let mut triggers = Vec::new();
        for (i, text) in self.triggers.iter().enumerate() {
            match Trigger::parse(text) {
                Some(t) if !triggers.contains(&t) => triggers.push(t),
                Some(_) => {}
                None => errors.add(
                    format!("triggers.{i}"),
                    "validation_invalid_value",
                    format!(
                        "`{text}` is not a trigger: `http`, `{{collection|*}}.before-create|before-update|before-delete` or `{{collection|*}}.created|updated|deleted|*`."
                    ),
                ),
            }
        }
        if let Some(filter) = &self.filter
            && let Err(e) = crate::filter::parse(filter)
        {
            errors.add("filter", "validation_invalid_value", e.to_string());
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.retries.max_attempts) {
            errors.add(
                "retries.maxAttempts",
                "validation_out_of_range",
                format!("Must be between 1 and {MAX_ATTEMPTS}."),
            );
        }
        if !(1..=3_600_000).contains(&self.retries.backoff_ms) {
            errors.add(
                "retries.backoffMs",
                "validation_out_of_range",
                "Must be between 1 and 3600000.".into(),
            );
        }
        for (i, schedule) in self.schedules.iter().enumerate() {
            if let Err(e) = super::cron::Cron::parse(&schedule.cron, schedule.timezone.as_deref()) {
                errors.add(format!("schedules.{i}"), "validation_invalid_value", e);
            }
        }
        for (i, pattern) in self.outbound.iter().enumerate() {
            if let Err(e) = super::outbound::Pattern::parse(pattern) {
                errors.add(format!("outbound.{i}"), "validation_invalid_value", e);
            }
        }
        let l = &self.limits;
        let mut range = |field: &str, ok: bool, max: String| {
            if !ok {
                errors.add(
                    format!("limits.{field}"),
                    "validation_out_of_range",
                    format!("Must be between 1 and {max}."),
                );
            }
        };
        range(
            "timeoutMs",
            (1..=MAX_TIMEOUT_MS).contains(&l.timeout_ms),
            MAX_TIMEOUT_MS.to_string(),
        );
        range(
            "memoryMb",
            (1..=MAX_MEMORY_MB).contains(&l.memory_mb),
            MAX_MEMORY_MB.to_string(),
        );
        range(
            "outputKb",
            (1..=MAX_OUTPUT_KB).contains(&l.output_kb),
            MAX_OUTPUT_KB.to_string(),
        );
        range(
            "hostCalls",
            (1..=MAX_HOST_CALLS).contains(&l.host_calls),
            MAX_HOST_CALLS.to_string(),
        );
        errors.into_result().map(|()| triggers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::HookOp;

    #[test]
    fn triggers_parse_and_fire() {
        assert_eq!(Trigger::parse("http"), Some(Trigger::Http));
        let t = Trigger::parse("posts.before-create").unwrap();
        assert!(t.fires("posts", HookOp::Create));
        assert!(!t.fires("posts", HookOp::Update));
        assert!(!t.fires("comments", HookOp::Create));
        let any = Trigger::parse("*.before-delete").unwrap();
        assert!(any.fires("comments", HookOp::Delete));
        for bad in [
            "",
            "posts",
            "posts.create",
            ".before-create",
            "a b.before-create",
            "HTTP",
        ] {
            assert_eq!(Trigger::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn manifests_are_checked() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "name": "slug", "triggers": ["posts.before-create", "http"]
        }))
        .unwrap();
        assert_eq!(m.check().unwrap().len(), 2);
        assert_eq!(m.limits, Limits::default());
        assert!(m.enabled);
        let bad: Manifest = serde_json::from_value(serde_json::json!({
            "name": "Bad Name", "triggers": ["nope"], "limits": {"timeoutMs": 0}
        }))
        .unwrap();
        let errors = bad.check().unwrap_err().into_map();
        for field in ["name", "triggers.0", "limits.timeoutMs"] {
            assert!(errors.contains_key(field), "{field}: {errors:?}");
        }
        assert!(
            serde_json::from_value::<Manifest>(serde_json::json!({"name": "a", "extra": 1}))
                .is_err()
        );
    }
}
