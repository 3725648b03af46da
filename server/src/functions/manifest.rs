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

/// When a function runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `http`: requests to `/api/functions/{name}/…`.
    Http,
    /// `{collection}.before-create` (or `*.before-create`), and update and delete.
    Before {
        /// A collection's name, or `*` for every collection.
        collection: String,
        op: crate::records::HookOp,
    },
}

impl Trigger {
    /// Parse `http` or `{collection|*}.before-{create|update|delete}`.
    pub fn parse(text: &str) -> Option<Trigger> {
        use crate::records::HookOp;
        if text == "http" {
            return Some(Trigger::Http);
        }
        let (collection, event) = text.rsplit_once('.')?;
        let op = match event {
            "before-create" => HookOp::Create,
            "before-update" => HookOp::Update,
            "before-delete" => HookOp::Delete,
            _ => return None,
        };
        let valid = collection == "*"
            || (!collection.is_empty()
                && collection
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'));
        valid.then(|| Trigger::Before {
            collection: collection.to_owned(),
            op,
        })
    }

    /// Whether a write of `op` to `collection` fires this trigger.
    pub fn fires(&self, collection: &str, op: crate::records::HookOp) -> bool {
        match self {
            Trigger::Http => false,
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
}

fn enabled() -> bool {
    true
}

/// Whether `name` may name a function: 1–64 of `a-z 0-9 _ -`, starting with a letter,
/// and not `invocations` (the route of the invocation log).
pub fn valid_name(name: &str) -> bool {
    name != "invocations"
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
                        "`{text}` is not a trigger: `http` or `{{collection|*}}.before-create|before-update|before-delete`."
                    ),
                ),
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
            "posts.created",
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
