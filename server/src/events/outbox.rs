//! The transactional outbox: a CloudEvent row per record change, inserted in the
//! change's own transaction, so a committed change always has its event and a
//! rolled-back one never does.

use chrono::{SecondsFormat, Utc};
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

/// The columns of an outbox row, in the order [`row`] gives their values.
pub const COLUMNS: [outbox::Column; 8] = [
    outbox::Column::Id,
    outbox::Column::Collection,
    outbox::Column::Action,
    outbox::Column::Payload,
    outbox::Column::Hidden,
    outbox::Column::Created,
    outbox::Column::Sent,
    outbox::Column::Attempts,
];

/// The values of the outbox row for a change (see [`COLUMNS`]), to insert inside the
/// change's transaction. `hidden` holds the record's hidden field values, kept beside
/// the event for in-process subscribers and never published. With `delivered` (no
/// external broker: the in-process feed is the only consumer) the row is written as
/// sent, so the dispatcher has nothing to do for it.
pub fn row(
    collection: &str,
    action: Action,
    id: &str,
    record: &Value,
    previous: Option<&Value>,
    hidden: Option<&Value>,
    delivered: bool,
) -> [sea_orm::Value; 8] {
    let event_id = uuid::Uuid::now_v7().to_string();
    let event = cloud_event(&event_id, collection, action, id, record, previous);
    let now = Utc::now();
    [
        event_id.into(),
        collection.into(),
        action.as_str().into(),
        event.to_string().into(),
        hidden.map(Value::to_string).into(),
        now.into(),
        sea_orm::Value::ChronoDateTimeUtc(delivered.then_some(now)),
        0i32.into(),
    ]
}

/// The newest event's `seq` (0 for an empty outbox): where a reader that wants only
/// what is committed from now on starts.
///
/// Fails when `_outbox` cannot be read.
pub async fn newest_seq(conn: &impl sea_orm::ConnectionTrait) -> Result<i64, sea_orm::DbErr> {
    use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
    Ok(outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Seq)
        .order_by_desc(outbox::Column::Seq)
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .unwrap_or(0))
}

/// Up to `limit` events after `seq`, in `seq` order.
///
/// Fails when `_outbox` cannot be read.
pub async fn after(
    conn: &impl sea_orm::ConnectionTrait,
    seq: i64,
    limit: u64,
) -> Result<Vec<outbox::Model>, sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    outbox::Entity::find()
        .filter(outbox::Column::Seq.gt(seq))
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
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
