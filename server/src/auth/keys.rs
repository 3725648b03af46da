//! API keys (service accounts): created by superusers with a name, scopes and an
//! optional expiry. The secret is shown once and only its SHA-256 is stored; a key is
//! revocable and records when it was last used. Presented as
//! `Authorization: Bearer bsk_<id>_<secret>`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AuthError, random_string};
use crate::db::Db;
use crate::db::entities::api_keys;
use crate::identity::{ApiKey, Identity, Op, Scopes};
use crate::schema::Snapshot;
use crate::validation::FieldErrors;

/// Every key starts with this, so scanners and people can tell what it is.
pub const PREFIX: &str = "bsk_";
/// `last_used` is written at most this often per key.
const LAST_USED_EVERY_SECONDS: i64 = 60;

#[derive(Clone, Debug)]
pub struct ApiKeys {
    db: Db,
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal without telling, by its timing, where two hashes first differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

/// A key as superusers see it: never its secret or hash.
pub fn public(key: &api_keys::Model) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "scopes": serde_json::from_str::<Value>(&key.scopes).unwrap_or(Value::Null),
        "expires": key.expires.as_ref().map(timestamp),
        "revoked": key.revoked.as_ref().map(timestamp),
        "lastUsed": key.last_used.as_ref().map(timestamp),
        "created": timestamp(&key.created),
    })
}

/// `"superuser"` or `[{"collection": "posts", "operations": ["list", "view"]}]`,
/// collections named as they exist now.
pub(crate) fn parse_scopes(value: &Value, snapshot: &Snapshot) -> Result<Scopes, FieldErrors> {
    let mut errors = FieldErrors::default();
    if value == "superuser" {
        return Ok(Scopes::Superuser);
    }
    let Some(items) = value.as_array().filter(|items| !items.is_empty()) else {
        errors.add(
            "scopes",
            "validation_invalid_value",
            "Must be `superuser` or a non-empty list of {collection, operations}.".into(),
        );
        return Err(errors);
    };
    let mut scopes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let collection = item.get("collection").and_then(Value::as_str);
        let Some(collection) = collection.and_then(|c| snapshot.get(c)) else {
            errors.add(
                format!("scopes.{i}.collection"),
                "validation_missing_collection",
                "No such collection.".into(),
            );
            continue;
        };
        let ops: Option<Vec<Op>> = item
            .get("operations")
            .and_then(Value::as_array)
            .filter(|ops| !ops.is_empty())
            .and_then(|ops| {
                ops.iter()
                    .map(|op| op.as_str().and_then(Op::parse))
                    .collect()
            });
        match ops {
            Some(ops) => scopes.push((collection.name.clone(), ops)),
            None => errors.add(
                format!("scopes.{i}.operations"),
                "validation_invalid_value",
                "A non-empty list of list, view, create, update, delete.".into(),
            ),
        }
        if let Some(extra) = item.as_object().and_then(|o| {
            o.keys()
                .find(|k| !matches!(k.as_str(), "collection" | "operations"))
        }) {
            errors.add(
                format!("scopes.{i}.{extra}"),
                "validation_unknown_key",
                format!("Unknown key `{extra}`."),
            );
        }
    }
    errors.into_result().map(|()| Scopes::Collections(scopes))
}

fn scopes_json(scopes: &Scopes) -> Value {
    match scopes {
        Scopes::Superuser => json!("superuser"),
        Scopes::Collections(items) => Value::Array(
            items
                .iter()
                .map(|(collection, ops)| {
                    json!({"collection": collection, "operations": ops.iter().map(|o| o.as_str()).collect::<Vec<_>>()})
                })
                .collect(),
        ),
    }
}

fn stored_scopes(text: &str) -> Option<Scopes> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value == "superuser" {
        return Some(Scopes::Superuser);
    }
    let items = value.as_array()?;
    items
        .iter()
        .map(|item| {
            let collection = item.get("collection")?.as_str()?.to_owned();
            let ops = item
                .get("operations")?
                .as_array()?
                .iter()
                .map(|op| op.as_str().and_then(Op::parse))
                .collect::<Option<Vec<_>>>()?;
            Some((collection, ops))
        })
        .collect::<Option<Vec<_>>>()
        .map(Scopes::Collections)
}

impl ApiKeys {
    pub fn new(db: Db) -> ApiKeys {
        ApiKeys { db }
    }

    /// Create a key; returns it as stored and the secret, which is never shown again.
    ///
    /// Fails with `Validation` for a missing name, bad scopes or an expiry in the past.
    pub async fn create(
        &self,
        snapshot: &Snapshot,
        body: &Value,
    ) -> Result<(api_keys::Model, String), AuthError> {
        let mut errors = FieldErrors::default();
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        if name.is_empty() || name.len() > 200 {
            errors.add(
                "name",
                "validation_required",
                "A name of 1 to 200 bytes.".into(),
            );
        }
        let scopes = match parse_scopes(body.get("scopes").unwrap_or(&Value::Null), snapshot) {
            Ok(scopes) => Some(scopes),
            Err(problems) => {
                errors.extend(problems);
                None
            }
        };
        let expires = match body.get("expires") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                match crate::records::validate::parse_date(text).filter(|t| *t > Utc::now()) {
                    Some(t) => Some(t),
                    None => {
                        errors.add(
                            "expires",
                            "validation_invalid_date",
                            "A date in the future, e.g. 2030-01-01 00:00:00.000Z.".into(),
                        );
                        None
                    }
                }
            }
            Some(_) => {
                errors.add(
                    "expires",
                    "validation_invalid_date",
                    "Must be a date string.".into(),
                );
                None
            }
        };
        if let Some(extra) = body.as_object().and_then(|o| {
            o.keys()
                .find(|k| !matches!(k.as_str(), "name" | "scopes" | "expires"))
        }) {
            errors.add(
                extra.clone(),
                "validation_unknown_field",
                format!("Unknown field `{extra}`."),
            );
        }
        errors.into_result().map_err(AuthError::Validation)?;
        let scopes = scopes.ok_or_else(|| AuthError::Internal("scopes".into()))?;
        let id = random_string(15)?.to_lowercase();
        let secret = random_string(40)?;
        let row = api_keys::ActiveModel {
            id: Set(id.clone()),
            name: Set(name.to_owned()),
            hash: Set(hash(&secret)),
            scopes: Set(scopes_json(&scopes).to_string()),
            expires: Set(expires),
            revoked: Set(None),
            last_used: Set(None),
            created: Set(Utc::now()),
        };
        let model = row
            .insert(self.db.conn())
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok((model, format!("{PREFIX}{id}_{secret}")))
    }

    /// Every key, newest first.
    ///
    /// Fails when `_api_keys` cannot be read.
    pub async fn list(&self) -> Result<Vec<api_keys::Model>, AuthError> {
        api_keys::Entity::find()
            .order_by_desc(api_keys::Column::Created)
            .all(self.db.conn())
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Revoke a key (it stays listed, marked revoked); `false` if there is none.
    ///
    /// Fails when `_api_keys` cannot be written.
    pub async fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        let db = |e: sea_orm::DbErr| AuthError::Internal(e.to_string());
        let Some(key) = api_keys::Entity::find_by_id(id.to_owned())
            .one(self.db.conn())
            .await
            .map_err(db)?
        else {
            return Ok(false);
        };
        if key.revoked.is_none() {
            let mut key: api_keys::ActiveModel = key.into();
            key.revoked = Set(Some(Utc::now()));
            key.update(self.db.conn()).await.map_err(db)?;
        }
        Ok(true)
    }

    /// The identity behind a presented key.
    ///
    /// Fails with `InvalidToken` for a malformed, unknown, wrong, revoked or expired
    /// key.
    pub async fn identify(&self, presented: &str) -> Result<Identity, AuthError> {
        let rest = presented
            .strip_prefix(PREFIX)
            .ok_or(AuthError::InvalidToken)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::InvalidToken)?;
        let key = api_keys::Entity::find_by_id(id.to_owned())
            .one(self.db.conn())
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .ok_or(AuthError::InvalidToken)?;
        let now = Utc::now();
        let valid = same(&key.hash, &hash(secret))
            && key.revoked.is_none()
            && key.expires.is_none_or(|t| t > now);
        if !valid {
            return Err(AuthError::InvalidToken);
        }
        let scopes = stored_scopes(&key.scopes).ok_or(AuthError::InvalidToken)?;
        let stale = key
            .last_used
            .is_none_or(|t| (now - t).num_seconds() >= LAST_USED_EVERY_SECONDS);
        let identity = Identity::ApiKey(Arc::new(ApiKey {
            id: key.id.clone(),
            name: key.name.clone(),
            scopes,
        }));
        if stale {
            let mut key: api_keys::ActiveModel = key.into();
            key.last_used = Set(Some(now));
            if let Err(err) = key.update(self.db.conn()).await {
                tracing::warn!(%err, "could not record an API key's last use");
            }
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare_in_full() {
        assert!(same(&hash("a"), &hash("a")));
        assert!(!same(&hash("a"), &hash("b")));
        assert!(!same("ab", "abc"));
        assert_eq!(
            stored_scopes(r#"[{"collection":"posts","operations":["list","view"]}]"#),
            Some(Scopes::Collections(vec![(
                "posts".into(),
                vec![Op::List, Op::View]
            )]))
        );
        assert_eq!(stored_scopes(r#""superuser""#), Some(Scopes::Superuser));
        assert_eq!(
            stored_scopes(r#"[{"collection":"posts","operations":["nuke"]}]"#),
            None
        );
    }
}
