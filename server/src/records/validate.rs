//! Record input, checked field by field against its collection: the right JSON type
//! (never coerced: `"12"` is not a number, `"true"` is not a bool), each type's
//! options, required values, and no keys the collection does not have. What comes out
//! is the values as they are stored (dates in one format, defaults filled in on
//! create); what goes wrong is one PocketBase-shaped error per field.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::schema::{Collection, Field, FieldKind};
use crate::validation::FieldErrors;

/// The one message for a malformed and for a taken `email`.
pub const EMAIL_INVALID_OR_TAKEN: &str = "Invalid or already in use email address.";

/// Text fields without a `max` hold at most this many characters (as PocketBase).
pub const DEFAULT_TEXT_MAX: u64 = 5000;
/// JSON fields without a `maxSize` hold at most this many bytes.
pub const DEFAULT_JSON_MAX: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

/// Keys a record carries in responses that clients may send back unchanged; they
/// are ignored, never written.
const READ_ONLY_KEYS: [&str; 3] = ["collectionId", "collectionName", "expand"];

/// Check `input` for a create or an update of a record of `collection`.
///
/// Returns the values to store: only the fields given (plus defaults and a missing
/// required check on create). Password fields come back as given, for the caller to
/// hash. Fails with every problem found, by field name.
pub fn validate(
    collection: &Collection,
    input: &Map<String, Value>,
    mode: Mode,
) -> Result<Map<String, Value>, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut out = Map::new();
    let is_auth = collection.auth.is_some();
    for key in input.keys() {
        let known = collection.field(key).is_some()
            || READ_ONLY_KEYS.contains(&key.as_str())
            || (is_auth && matches!(key.as_str(), "passwordConfirm" | "oldPassword"));
        if !known {
            errors.add(
                key.clone(),
                "validation_unknown_field",
                format!("Unknown field `{key}`."),
            );
        }
    }
    for field in &collection.fields {
        if matches!(field.kind, FieldKind::Autodate { .. }) {
            continue; // set by Basalt, never by the client
        }
        let given = input.get(&field.name);
        let value = match (given, mode) {
            (Some(value), _) => value.clone(),
            (None, Mode::Create) => match &field.default {
                Some(default) => default.clone(),
                None => {
                    if field.required && !is_generated(field) {
                        errors.add(
                            field.name.clone(),
                            "validation_required",
                            "Missing required value.".into(),
                        );
                    }
                    continue;
                }
            },
            (None, Mode::Update) => continue,
        };
        if field.name == "id" && mode == Mode::Update {
            continue; // the id in a PATCH body is the record's own; the URL decides
        }
        match check(field, &value) {
            Ok(stored) => {
                if field.required && is_zero(&stored) && !is_generated(field) {
                    errors.add(
                        field.name.clone(),
                        "validation_required",
                        "Cannot be blank.".into(),
                    );
                } else {
                    out.insert(field.name.clone(), stored);
                }
            }
            Err((code, message)) => errors.add(field.name.clone(), code, message),
        }
    }
    if is_auth
        && let Some(password) = input.get("password")
        && input.get("passwordConfirm") != Some(password)
    {
        errors.add(
            "passwordConfirm",
            "validation_values_mismatch",
            "Values don't match.".into(),
        );
    }
    errors.into_result().map(|()| out)
}

/// Form fields (text) as the JSON their field types take: numbers, bools, lists and
/// JSON are converted; a value that does not convert stays text, so validation
/// refuses it with the usual error. Keys that are not fields stay as they are.
pub fn from_form(collection: &Collection, input: Map<String, Value>) -> Map<String, Value> {
    input
        .into_iter()
        .map(|(key, value)| {
            let name = key.trim_start_matches('+').trim_end_matches(['+', '-']);
            let Some(field) = collection.field(name) else {
                return (key, value);
            };
            let text = |v: &Value| v.as_str().map(str::to_owned);
            let converted = match (&field.kind, &value) {
                (FieldKind::Number { .. }, Value::String(s)) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map_or(value.clone(), crate::schema::model::number),
                (FieldKind::Bool, Value::String(s)) => match s.as_str() {
                    "true" | "1" | "on" => Value::Bool(true),
                    "false" | "0" | "" => Value::Bool(false),
                    _ => value.clone(),
                },
                (FieldKind::Json { .. }, Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or(value.clone())
                }
                (kind, Value::String(s)) if kind.is_multi() && key == name => {
                    if s.is_empty() {
                        Value::Array(Vec::new())
                    } else {
                        Value::Array(vec![Value::String(s.clone())])
                    }
                }
                (_, Value::Array(items)) if !field.kind.is_multi() => items
                    .last()
                    .and_then(text)
                    .map_or(value.clone(), Value::String),
                _ => value.clone(),
            };
            (key, converted)
        })
        .collect()
}

/// Fields Basalt fills when the client leaves them out.
fn is_generated(field: &Field) -> bool {
    match &field.kind {
        FieldKind::Text {
            primary_key,
            autogenerate_pattern,
            ..
        } => *primary_key || !autogenerate_pattern.is_empty(),
        _ => false,
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

type Problem = (&'static str, String);

fn problem(code: &'static str, message: impl Into<String>) -> Problem {
    (code, message.into())
}

/// Whether any text in `value` (object keys included) holds a NUL character, which
/// PostgreSQL cannot store: refused on both engines so they answer alike.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// One field's value, checked and converted to what is stored.
fn check(field: &Field, value: &Value) -> Result<Value, Problem> {
    if has_nul(value) {
        return Err(problem(
            "validation_invalid_nul",
            "Must not contain the NUL character.",
        ));
    }
    if value.is_null() {
        return if field.nullable || !field.required {
            Ok(if field.nullable {
                Value::Null
            } else {
                zero(field)
            })
        } else {
            Err(problem("validation_required", "Cannot be blank."))
        };
    }
    match &field.kind {
        FieldKind::Text {
            min, max, pattern, ..
        } => {
            let text = string(value, "validation_invalid_text", "Must be a string.")?;
            let length = text.chars().count() as u64;
            let max = if *max == 0 { DEFAULT_TEXT_MAX } else { *max };
            if field.name == "id" && !valid_id(text) {
                return Err(problem(
                    "validation_invalid_id",
                    "Must be 1–64 characters of a-z, A-Z, 0-9, _ and -.",
                ));
            }
            if length > 0 && length < *min {
                return Err(problem(
                    "validation_min_text_constraint",
                    format!("Must be at least {min} characters."),
                ));
            }
            if length > max {
                return Err(problem(
                    "validation_max_text_constraint",
                    format!("Must be at most {max} characters."),
                ));
            }
            matches_pattern(text, pattern)?;
            Ok(Value::String(text.to_owned()))
        }
        FieldKind::Password {
            min, max, pattern, ..
        } => {
            let text = string(value, "validation_invalid_text", "Must be a string.")?;
            let length = text.len() as u64;
            let max = if *max == 0 { 256 } else { *max };
            if length < *min {
                return Err(problem(
                    "validation_min_text_constraint",
                    format!("Must be at least {min} characters."),
                ));
            }
            if length > max {
                return Err(problem(
                    "validation_max_text_constraint",
                    format!("Must be at most {max} bytes."),
                ));
            }
            matches_pattern(text, pattern)?;
            Ok(Value::String(text.to_owned()))
        }
        FieldKind::Number { min, max, only_int } => {
            let n = value
                .as_f64()
                .filter(|n| n.is_finite() && value.is_number())
                .ok_or_else(|| problem("validation_invalid_number", "Must be a number."))?;
            if *only_int && n.fract() != 0.0 {
                return Err(problem(
                    "validation_only_int_constraint",
                    "Must be a whole number.",
                ));
            }
            if min.is_some_and(|m| n < m) {
                return Err(problem(
                    "validation_min_number_constraint",
                    format!("Must be at least {}.", min.unwrap_or_default()),
                ));
            }
            if max.is_some_and(|m| n > m) {
                return Err(problem(
                    "validation_max_number_constraint",
                    format!("Must be at most {}.", max.unwrap_or_default()),
                ));
            }
            Ok(crate::schema::model::number(n))
        }
        FieldKind::Bool => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| problem("validation_invalid_bool", "Must be true or false.")),
        FieldKind::Email {
            except_domains,
            only_domains,
        } => {
            let text = string(
                value,
                "validation_invalid_email",
                "Must be a valid email address.",
            )?;
            if text.is_empty() {
                return Ok(Value::String(String::new()));
            }
            let domain = email_domain(text).ok_or_else(|| {
                // An auth record's `email` says the same when it is taken, so sign-up
                // does not tell whether an account exists.
                let message = if field.name == "email" {
                    EMAIL_INVALID_OR_TAKEN
                } else {
                    "Must be a valid email address."
                };
                problem("validation_invalid_email", message)
            })?;
            check_domain(
                &domain,
                except_domains,
                only_domains,
                "validation_email_domain_not_allowed",
            )?;
            Ok(Value::String(text.to_lowercase()))
        }
        FieldKind::Url {
            except_domains,
            only_domains,
        } => {
            let text = string(value, "validation_invalid_url", "Must be a valid URL.")?;
            if text.is_empty() {
                return Ok(Value::String(String::new()));
            }
            let url = url::Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| problem("validation_invalid_url", "Must be a valid http(s) URL."))?;
            check_domain(
                url.host_str().unwrap_or_default(),
                except_domains,
                only_domains,
                "validation_url_domain_not_allowed",
            )?;
            Ok(Value::String(text.to_owned()))
        }
        FieldKind::Date { min, max } => {
            let text = string(value, "validation_invalid_date", "Must be a date.")?;
            if text.is_empty() {
                return Ok(Value::String(String::new()));
            }
            let date = parse_date(text).ok_or_else(|| {
                problem(
                    "validation_invalid_date",
                    "Must be a date such as 2024-01-31 10:00:00.000Z.",
                )
            })?;
            if let Some(min) = parse_date(min).filter(|m| date < *m) {
                return Err(problem(
                    "validation_min_date_constraint",
                    format!("Must be no earlier than {}.", format_date(min)),
                ));
            }
            if let Some(max) = parse_date(max).filter(|m| date > *m) {
                return Err(problem(
                    "validation_max_date_constraint",
                    format!("Must be no later than {}.", format_date(max)),
                ));
            }
            Ok(Value::String(format_date(date)))
        }
        FieldKind::Select { values, max_select } => {
            let in_values = |v: &Value| -> Result<String, Problem> {
                v.as_str()
                    .filter(|s| values.iter().any(|allowed| allowed == s))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        problem(
                            "validation_invalid_value",
                            format!("Must be one of: {}.", values.join(", ")),
                        )
                    })
            };
            if field.kind.is_multi() {
                let items = value.as_array().ok_or_else(|| {
                    problem("validation_invalid_value", "Must be a list of values.")
                })?;
                let mut chosen: Vec<String> = Vec::new();
                for item in items {
                    let item = in_values(item)?;
                    if !chosen.contains(&item) {
                        chosen.push(item);
                    }
                }
                if chosen.len() as u64 > *max_select {
                    return Err(problem(
                        "validation_too_many_values",
                        format!("Select at most {max_select}."),
                    ));
                }
                Ok(Value::from(chosen))
            } else if value.as_str() == Some("") {
                Ok(Value::String(String::new()))
            } else {
                in_values(value).map(Value::String)
            }
        }
        FieldKind::Json { max_size } => {
            let limit = if *max_size == 0 {
                DEFAULT_JSON_MAX
            } else {
                *max_size
            };
            if value.to_string().len() as u64 > limit {
                return Err(problem(
                    "validation_json_size_limit",
                    format!("Must be at most {limit} bytes of JSON."),
                ));
            }
            Ok(value.clone())
        }
        FieldKind::Relation {
            min_select,
            max_select,
            ..
        } => {
            let id = |v: &Value| -> Result<String, Problem> {
                v.as_str()
                    .filter(|s| valid_id(s))
                    .map(str::to_owned)
                    .ok_or_else(|| problem("validation_invalid_relation", "Must be a record id."))
            };
            if field.kind.is_multi() {
                let items = value.as_array().ok_or_else(|| {
                    problem(
                        "validation_invalid_relation",
                        "Must be a list of record ids.",
                    )
                })?;
                let mut ids: Vec<String> = Vec::new();
                for item in items {
                    let item = id(item)?;
                    if !ids.contains(&item) {
                        ids.push(item);
                    }
                }
                if (ids.len() as u64) > *max_select {
                    return Err(problem(
                        "validation_too_many_values",
                        format!("Select at most {max_select}."),
                    ));
                }
                if !ids.is_empty() && (ids.len() as u64) < *min_select {
                    return Err(problem(
                        "validation_not_enough_values",
                        format!("Select at least {min_select}."),
                    ));
                }
                Ok(Value::from(ids))
            } else if value.as_str() == Some("") {
                Ok(Value::String(String::new()))
            } else {
                id(value).map(Value::String)
            }
        }
        FieldKind::Autodate { .. } => Ok(Value::Null),
    }
}

/// The stored "nothing" of a field that is not nullable.
fn zero(field: &Field) -> Value {
    match &field.kind {
        FieldKind::Number { .. } => Value::from(0),
        FieldKind::Bool => Value::Bool(false),
        FieldKind::Json { .. } => Value::Null,
        kind if kind.is_multi() => Value::Array(Vec::new()),
        _ => Value::String(String::new()),
    }
}

fn string<'a>(value: &'a Value, code: &'static str, message: &str) -> Result<&'a str, Problem> {
    value.as_str().ok_or_else(|| problem(code, message))
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn matches_pattern(text: &str, pattern: &str) -> Result<(), Problem> {
    if pattern.is_empty() || text.is_empty() {
        return Ok(());
    }
    // Patterns are checked when the collection is saved; one that still fails to
    // compile here refuses the value rather than letting it through.
    let matches = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(text));
    if matches {
        Ok(())
    } else {
        Err(problem(
            "validation_invalid_format",
            format!("Must match {pattern}."),
        ))
    }
}

fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| domain.to_lowercase())
}

fn check_domain(
    domain: &str,
    except: &[String],
    only: &[String],
    code: &'static str,
) -> Result<(), Problem> {
    let domain = domain.to_lowercase();
    let listed = |list: &[String]| list.iter().any(|d| d.eq_ignore_ascii_case(&domain));
    if listed(except) || (!only.is_empty() && !listed(only)) {
        return Err(problem(
            code,
            format!("The domain {domain} is not allowed."),
        ));
    }
    Ok(())
}

/// RFC 3339 or PocketBase's `2024-01-31 10:00:00.000Z` (the `T`, the fraction and
/// the zone are optional; no zone means UTC).
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    if text.is_empty() {
        return None;
    }
    if let Ok(date) = DateTime::parse_from_rfc3339(text) {
        return Some(date.with_timezone(&Utc));
    }
    let normal = text.replacen('T', " ", 1);
    let normal = normal.trim_end_matches('Z');
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(normal, format) {
            return Some(naive.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(normal, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

pub fn format_date(date: DateTime<Utc>) -> String {
    crate::schema::service::format_time(date)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::model::{CollectionKind, Rules};

    fn field(name: &str, kind: FieldKind) -> Field {
        Field {
            id: name.into(),
            name: name.into(),
            system: false,
            hidden: false,
            presentable: false,
            required: false,
            nullable: false,
            default: None,
            kind,
        }
    }

    fn text() -> FieldKind {
        FieldKind::Text {
            min: 0,
            max: 0,
            pattern: String::new(),
            autogenerate_pattern: String::new(),
            primary_key: false,
        }
    }

    fn posts() -> Collection {
        let mut id = field(
            "id",
            FieldKind::Text {
                min: 1,
                max: 64,
                pattern: String::new(),
                autogenerate_pattern: String::new(),
                primary_key: true,
            },
        );
        id.system = true;
        id.required = true;
        let mut title = field(
            "title",
            FieldKind::Text {
                min: 3,
                max: 10,
                pattern: "^[A-Z]".into(),
                autogenerate_pattern: String::new(),
                primary_key: false,
            },
        );
        title.required = true;
        let mut views = field(
            "views",
            FieldKind::Number {
                min: Some(0.0),
                max: Some(100.0),
                only_int: true,
            },
        );
        views.default = Some(json!(0));
        Collection {
            id: "c1".into(),
            name: "posts".into(),
            kind: CollectionKind::Base,
            system: false,
            fields: vec![
                id,
                title,
                views,
                field("done", FieldKind::Bool),
                field(
                    "contact",
                    FieldKind::Email {
                        except_domains: vec!["spam.test".into()],
                        only_domains: vec![],
                    },
                ),
                field(
                    "site",
                    FieldKind::Url {
                        except_domains: vec![],
                        only_domains: vec![],
                    },
                ),
                field(
                    "due",
                    FieldKind::Date {
                        min: "2020-01-01".into(),
                        max: String::new(),
                    },
                ),
                field(
                    "kind",
                    FieldKind::Select {
                        values: vec!["a".into(), "b".into()],
                        max_select: 1,
                    },
                ),
                field(
                    "tags",
                    FieldKind::Select {
                        values: vec!["x".into(), "y".into(), "z".into()],
                        max_select: 2,
                    },
                ),
                field("meta", FieldKind::Json { max_size: 50 }),
                field(
                    "author",
                    FieldKind::Relation {
                        collection_id: "u".into(),
                        cascade_delete: false,
                        min_select: 0,
                        max_select: 1,
                    },
                ),
                field("note", text()),
                field(
                    "created",
                    FieldKind::Autodate {
                        on_create: true,
                        on_update: false,
                    },
                ),
            ],
            indexes: vec![],
            rules: Rules::default(),
            auth: None,
            created: String::new(),
            updated: String::new(),
        }
    }

    fn errors(input: serde_json::Value, mode: Mode) -> FieldErrors {
        validate(&posts(), input.as_object().unwrap(), mode).unwrap_err()
    }

    #[test]
    fn valid_input_is_normalised() {
        let out = validate(
            &posts(),
            json!({"title": "Hello", "done": true, "contact": "Ann@Example.com", "due": "2024-05-01T10:00:00+02:00",
                   "tags": ["x", "x", "y"], "meta": {"a": 1}, "author": "u_1", "collectionName": "posts"})
                .as_object()
                .unwrap(),
            Mode::Create,
        )
        .unwrap();
        assert_eq!(out["views"], json!(0), "default filled in");
        assert_eq!(out["contact"], "ann@example.com");
        assert_eq!(out["due"], "2024-05-01 08:00:00.000Z");
        assert_eq!(out["tags"], json!(["x", "y"]), "duplicates dropped");
        assert!(
            !out.contains_key("collectionName"),
            "read-only keys ignored"
        );
        assert!(!out.contains_key("created"));
    }

    #[test]
    fn wrong_types_are_refused_not_coerced() {
        let errs = errors(
            json!({"title": "Hello", "views": "12", "done": "true", "contact": "nope", "site": "ftp://x",
                   "due": "yesterday", "kind": "c", "tags": "x", "meta": {"big": "x".repeat(60)},
                   "author": 5, "note": 3}),
            Mode::Create,
        );
        for (key, code) in [
            ("views", "validation_invalid_number"),
            ("done", "validation_invalid_bool"),
            ("contact", "validation_invalid_email"),
            ("site", "validation_invalid_url"),
            ("due", "validation_invalid_date"),
            ("kind", "validation_invalid_value"),
            ("tags", "validation_invalid_value"),
            ("meta", "validation_json_size_limit"),
            ("author", "validation_invalid_relation"),
            ("note", "validation_invalid_text"),
        ] {
            assert_eq!(
                errs.get(key).map(|e| e.code.as_str()),
                Some(code),
                "{key}: {errs:?}"
            );
        }
    }

    #[test]
    fn options_are_enforced() {
        for (input, key, code) in [
            (
                json!({"title": "Hi"}),
                "title",
                "validation_min_text_constraint",
            ),
            (
                json!({"title": "Hello world!"}),
                "title",
                "validation_max_text_constraint",
            ),
            (
                json!({"title": "hello"}),
                "title",
                "validation_invalid_format",
            ),
            (
                json!({"title": "Hello", "views": 1.5}),
                "views",
                "validation_only_int_constraint",
            ),
            (
                json!({"title": "Hello", "views": 101}),
                "views",
                "validation_max_number_constraint",
            ),
            (
                json!({"title": "Hello", "views": -1}),
                "views",
                "validation_min_number_constraint",
            ),
            (
                json!({"title": "Hello", "contact": "a@spam.test"}),
                "contact",
                "validation_email_domain_not_allowed",
            ),
            (
                json!({"title": "Hello", "due": "2019-12-31"}),
                "due",
                "validation_min_date_constraint",
            ),
            (
                json!({"title": "Hello", "tags": ["x", "y", "z"]}),
                "tags",
                "validation_too_many_values",
            ),
            (
                json!({"title": "Hello", "id": "has space"}),
                "id",
                "validation_invalid_id",
            ),
            (
                json!({"title": "Hello", "nope": 1}),
                "nope",
                "validation_unknown_field",
            ),
            (json!({}), "title", "validation_required"),
            (json!({"title": ""}), "title", "validation_required"),
            (json!({"title": null}), "title", "validation_required"),
        ] {
            let errs = errors(input.clone(), Mode::Create);
            assert_eq!(
                errs.get(key).map(|e| e.code.as_str()),
                Some(code),
                "{input}: {errs:?}"
            );
        }
    }

    #[test]
    fn updates_check_only_what_is_given() {
        let out = validate(
            &posts(),
            json!({"done": true}).as_object().unwrap(),
            Mode::Update,
        )
        .unwrap();
        assert_eq!(
            out.len(),
            1,
            "no defaults, no required check for absent fields"
        );
        let errs = errors(json!({"title": ""}), Mode::Update);
        assert!(errs.get("title").is_some());
    }

    #[test]
    fn dates() {
        for text in [
            "2024-01-31 10:00:00.000Z",
            "2024-01-31T10:00:00Z",
            "2024-01-31 10:00:00",
            "2024-01-31 10:00",
            "2024-01-31T12:00:00+02:00",
        ] {
            assert_eq!(
                parse_date(text).map(format_date).as_deref(),
                Some("2024-01-31 10:00:00.000Z"),
                "{text}"
            );
        }
        assert_eq!(
            parse_date("2024-01-31").map(format_date).as_deref(),
            Some("2024-01-31 00:00:00.000Z")
        );
        for bad in ["", "2024-13-01", "31/01/2024", "now"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
