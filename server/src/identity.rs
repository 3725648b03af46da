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
}

impl Identity {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Identity::Superuser { .. })
    }

    /// The record id behind the identity, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::Record { record, .. } | Identity::Superuser { record } => {
                record.get("id").and_then(Value::as_str)
            }
        }
    }
}
