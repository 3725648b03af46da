//! Who a request acts as. `auth` works it out from a token; `records` (and every later
//! way in) decides with it. Imports only `schema`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::schema::Collection;

/// The collection of Basalt's administrators.
pub const SUPERUSERS: &str = "_superusers";

/// Who a request acts as.
#[derive(Clone, Debug)]
pub enum Identity {
    Anonymous,
    /// A record of an auth collection other than `_superusers`.
    Record {
        collection: Arc<Collection>,
        record: Map<String, Value>,
    },
    Superuser {
        record: Map<String, Value>,
    },
    /// A service account: an API key with its scopes.
    ApiKey(Arc<ApiKey>),
}

/// A record operation, as API-key scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    List,
    View,
    Create,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::List, Op::View, Op::Create, Op::Update, Op::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::View => "view",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

/// An API key as a request presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Scopes,
}

/// What an API key may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scopes {
    /// Everything a superuser may.
    Superuser,
    /// These operations on these collections (by name), bypassing their rules;
    /// nothing else.
    Collections(Vec<(String, Vec<Op>)>),
}

impl Identity {
    /// Superusers, and API keys (which act as superusers within their scopes; see
    /// [`Identity::in_scope`]).
    pub fn is_superuser(&self) -> bool {
        matches!(self, Identity::Superuser { .. } | Identity::ApiKey(_))
    }

    /// Whether a superuser's whole power: superusers and whole-superuser keys.
    pub fn is_full_superuser(&self) -> bool {
        match self {
            Identity::Superuser { .. } => true,
            Identity::ApiKey(key) => key.scopes == Scopes::Superuser,
            _ => false,
        }
    }

    /// Whether this identity may do `op` on `collection` at all: always for people
    /// (rules decide), for API keys only within their scopes.
    pub fn in_scope(&self, collection: &str, op: Op) -> bool {
        match self {
            Identity::ApiKey(key) => match &key.scopes {
                Scopes::Superuser => true,
                Scopes::Collections(scopes) => scopes
                    .iter()
                    .any(|(name, ops)| name == collection && ops.contains(&op)),
            },
            _ => true,
        }
    }

    /// The record id behind the identity, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Identity::Anonymous | Identity::ApiKey(_) => None,
            Identity::Record { record, .. } | Identity::Superuser { record } => {
                record.get("id").and_then(Value::as_str)
            }
        }
    }
}
