//! The transactional outbox: a CloudEvent row per record change, inserted in the
//! change's own transaction, so a committed change always has its event and a
//! rolled-back one never does.

use chrono::{SecondsFormat, Utc};
use sea_orm::DbErr;
use serde_json::{Value, json};

use crate::db::entities::outbox;

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

/// The CloudEvent 1.0 for a change of record `id` of `collection`. `record` and
/// `previous` are already stripped of what no subscriber may see.
pub fn cloud_event(
    event_id: &str,
    collection: &str,
    action: Action,
    id: &str,
    record: &Value,
    previous: Option<&Value>,
) -> Value {
    let mut data = json!({"collection": collection, "record": record});
    if let (Some(previous), Some(map)) = (previous, data.as_object_mut()) {
        map.insert("previous".into(), previous.clone());
    }
    json!({
        "specversion": "1.0",
        "id": event_id,
        "source": format!("/collections/{collection}"),
        "type": format!("basalt.record.{}", action.as_str()),
        "subject": id,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// The statement that inserts the event for a change, to run inside the change's
/// transaction. `hidden` holds the record's hidden field values, kept beside the
/// event for in-process subscribers and never published.
///
/// Fails only if the statement cannot be built.
pub fn insert(
    collection: &str,
    action: Action,
    id: &str,
    record: &Value,
    previous: Option<&Value>,
    hidden: Option<&Value>,
) -> Result<sea_orm::sea_query::InsertStatement, DbErr> {
    use sea_orm::sea_query::Query;
    let event_id = uuid::Uuid::now_v7().to_string();
    let event = cloud_event(&event_id, collection, action, id, record, previous);
    Ok(Query::insert()
        .into_table(outbox::Entity)
        .columns([
            outbox::Column::Id,
            outbox::Column::Collection,
            outbox::Column::Action,
            outbox::Column::Payload,
            outbox::Column::Hidden,
            outbox::Column::Created,
            outbox::Column::Attempts,
        ])
        .values([
            event_id.into(),
            collection.into(),
            action.as_str().into(),
            event.to_string().into(),
            hidden.map(Value::to_string).into(),
            Utc::now().into(),
            0i32.into(),
        ])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cloudevents() {
        let event = cloud_event(
            "0190-x",
            "posts",
            Action::Updated,
            "p1",
            &json!({"id": "p1", "title": "new"}),
            Some(&json!({"id": "p1", "title": "old"})),
        );
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "basalt.record.updated");
        assert_eq!(event["source"], "/collections/posts");
        assert_eq!(event["subject"], "p1");
        assert_eq!(event["data"]["previous"]["title"], "old");
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
        let created = cloud_event("e", "posts", Action::Created, "p1", &json!({}), None);
        assert!(created["data"].get("previous").is_none());
    }
}
