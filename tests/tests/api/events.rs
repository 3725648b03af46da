//! Record events: one `_outbox` row per committed change in the change's own
//! transaction, CloudEvents 1.0, drained in order to the in-process bus or to the
//! real RabbitMQ at 127.0.0.1:5672 with publisher confirms — and through a broker
//! outage without losing one. Tests with `rabbitmq` in their name share a nextest
//! group of one, since one of them stops the broker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_server::db::entities::outbox;
use basalt_tests::{Backend, TestApp, backend_tests, eventually, require_service, require_tool};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use reqwest::Method;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{Value, json};

backend_tests!(
    every_committed_change_has_exactly_one_event,
    the_in_process_bus_gets_every_event_in_order,
    rabbitmq_gets_cloudevents_with_confirms,
    rabbitmq_outage_loses_no_event,
    rabbitmq_instances_share_one_outbox,
    rabbitmq_unroutable_events_hold_nothing_back,
    rabbitmq_cut_mid_confirm_loses_no_event,
);

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn events(app: &TestApp) -> Vec<outbox::Model> {
    outbox::Entity::find()
        .order_by_asc(outbox::Column::Seq)
        .all(app.state.events.db().conn())
        .await
        .unwrap()
}

fn payload(row: &outbox::Model) -> Value {
    serde_json::from_str(&row.payload).unwrap()
}

/// A task creating `count` posts titled `{prefix}-{i}`, one after another, each
/// answered 200.
fn post_writer(app: &TestApp, count: usize, prefix: String) -> tokio::task::JoinHandle<()> {
    let client = app.client.clone();
    let url = app.url("/api/collections/posts/records");
    tokio::spawn(async move {
        for i in 0..count {
            let response = client
                .post(&url)
                .json(&json!({"title": format!("{prefix}-{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    })
}

/// posts (with a hidden field) and comments cascading from posts.
async fn schema(app: &TestApp, admin: &str) {
    let (status, posts) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(admin),
            Some(json!({
                "name": "posts", "listRule": "", "viewRule": "", "createRule": "title != 'no'",
                "updateRule": "", "deleteRule": "",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "n", "type": "number"},
                    {"name": "secret", "type": "text", "hidden": true},
                ],
            })),
        )
        .await;
    assert_eq!(status, 200, "{posts}");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(admin),
            Some(json!({
                "name": "comments", "createRule": "", "deleteRule": "",
                "fields": [{"name": "post", "type": "relation", "collectionId": posts["id"], "cascadeDelete": true}],
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn every_committed_change_has_exactly_one_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    let before = events(&app).await.len();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let app = &app;
        let path = path.to_owned();
        async move { app.call(method, &path, None, body).await }
    };

    let (status, post) = call(
        Method::POST,
        "/api/collections/posts/records",
        Some(json!({"title": "a", "secret": "s"})),
    )
    .await;
    assert_eq!(status, 200, "{post}");
    let id = post["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        Method::PATCH,
        &format!("/api/collections/posts/records/{id}"),
        Some(json!({"title": "b", "n+": 2})),
    )
    .await;
    assert_eq!(status, 200);
    // Refused and failing writes leave no event.
    assert_eq!(
        call(
            Method::POST,
            "/api/collections/posts/records",
            Some(json!({"title": "no"}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            Method::POST,
            "/api/collections/posts/records",
            Some(json!({"title": 5}))
        )
        .await
        .0,
        400
    );
    let (status, _) = call(
        Method::POST,
        "/api/batch",
        Some(json!({"requests": [
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "in batch"}},
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "no"}},
        ]})),
    )
    .await;
    assert_eq!(
        status, 400,
        "the batch is rolled back, its first create too"
    );
    let (status, _) = call(
        Method::POST,
        "/api/batch",
        Some(json!({"requests": [
            {"method": "POST", "url": "/api/collections/comments/records", "body": {"post": id}},
            {"method": "POST", "url": "/api/collections/comments/records", "body": {"post": id}},
        ]})),
    )
    .await;
    assert_eq!(status, 200);
    // Deleting the post cascades to both comments: three events in one transaction.
    assert_eq!(
        call(
            Method::DELETE,
            &format!("/api/collections/posts/records/{id}"),
            None
        )
        .await
        .0,
        204
    );
    // Sign-up (an auth record): its event carries no password hash or token key.
    let (status, user) = call(
        Method::POST,
        "/api/collections/users/records",
        Some(json!({"email": "ann@example.com", "password": "ann-password", "passwordConfirm": "ann-password"})),
    )
    .await;
    assert_eq!(status, 200, "{user}");

    let rows: Vec<outbox::Model> = events(&app).await.into_iter().skip(before).collect();
    let summary: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.collection.clone(), r.action.clone()))
        .collect();
    let expected = [
        ("posts", "created"),
        ("posts", "updated"),
        ("comments", "created"),
        ("comments", "created"),
        ("comments", "deleted"),
        ("comments", "deleted"),
        ("posts", "deleted"),
        ("users", "created"),
    ];
    assert_eq!(
        summary,
        expected.map(|(c, a)| (c.to_owned(), a.to_owned())).to_vec()
    );
    let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "event ids are unique");

    let created = payload(&rows[0]);
    assert_eq!(created["specversion"], "1.0");
    assert_eq!(created["id"], rows[0].id.as_str());
    assert_eq!(created["type"], "basalt.record.created");
    assert_eq!(created["source"], "/collections/posts");
    assert_eq!(created["subject"], id.as_str());
    assert_eq!(created["datacontenttype"], "application/json");
    assert!(created["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["data"]["collection"], "posts");
    assert_eq!(created["data"]["record"]["title"], "a");
    assert!(
        created["data"]["record"].get("secret").is_none(),
        "hidden fields never appear"
    );
    assert!(created["data"].get("previous").is_none());
    let updated = payload(&rows[1]);
    assert_eq!(updated["data"]["record"]["title"], "b");
    assert_eq!(updated["data"]["record"]["n"], 2);
    assert_eq!(updated["data"]["previous"]["title"], "a");
    let deleted = payload(&rows[6]);
    assert_eq!(deleted["type"], "basalt.record.deleted");
    assert_eq!(deleted["data"]["record"]["id"], id.as_str());
    let signed_up = payload(&rows[7]);
    let record = signed_up["data"]["record"].as_object().unwrap();
    assert_eq!(record["email"], "ann@example.com");
    assert!(
        !record.contains_key("password") && !record.contains_key("tokenKey"),
        "{record:?}"
    );
    assert!(!rows[7].payload.contains("$argon2"));
}

async fn the_in_process_bus_gets_every_event_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    let mut bus = app.state.events.subscribe();
    for i in 0..5 {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                None,
                Some(json!({"title": format!("t{i}")})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let mut titles = Vec::new();
    while titles.len() < 5 {
        let event = tokio::time::timeout(Duration::from_secs(10), bus.recv())
            .await
            .expect("an event within 10 s")
            .unwrap();
        if event.collection == "posts" {
            titles.push(
                event.payload["data"]["record"]["title"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert_eq!(titles, ["t0", "t1", "t2", "t3", "t4"]);
    eventually(Duration::from_secs(10), "every row marked sent", || async {
        (app.state.events.backlog().await == 0).then_some(())
    })
    .await;
    // Draining never fights the requests' writes (on SQLite it once took a write
    // transaction and failed with "database is locked" under concurrent writes).
    let writers: Vec<_> = (0..8)
        .map(|w| post_writer(&app, 40, format!("w{w}")))
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    eventually(
        Duration::from_secs(20),
        "the writes' events sent",
        || async { (app.state.events.backlog().await == 0).then_some(()) },
    )
    .await;
    assert_eq!(app.state.metrics.events.publish_failures.get(), 0);
    // Sent rows are pruned after the retention (0 here: at once).
    let app = TestApp::builder(backend)
        .setting("outbox_retention", "0s")
        .spawn()
        .await;
    app.create_auth_record("users", "bo@example.com", "bo-password")
        .await;
    eventually(Duration::from_secs(10), "sent", || async {
        (app.state.events.backlog().await == 0).then_some(())
    })
    .await;
    assert!(!events(&app).await.is_empty());
    app.state.events.prune().await;
    assert!(events(&app).await.is_empty(), "pruned");
}

/// A durable queue bound to `exchange` for every key, and the exchange itself (as
/// Basalt declares it).
async fn bind_queue(exchange: &str, queue: &str) {
    bind_queue_to(exchange, queue, "#").await;
}

/// A durable queue bound to `exchange` with `key`, and the exchange itself.
async fn bind_queue_to(exchange: &str, queue: &str, key: &str) {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    conn.close(200, "bound".into()).await.unwrap();
}

async fn cleanup(exchange: &str, queue: &str) {
    if let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await {
        let channel = conn.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
        let _ = conn.close(200, "cleanup".into()).await;
    }
}

/// Every delivery seen: message id, routing key, properties and body.
type Seen = Arc<Mutex<Vec<(String, String, lapin::BasicProperties, Value)>>>;

/// A fresh exchange with a queue bound to it and a consumer on that queue:
/// (exchange, queue, what the consumer has seen, the consumer task).
async fn bound_consumer() -> (String, String, Seen, tokio::task::JoinHandle<()>) {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let exchange = format!("basalt.test.{tag}");
    let queue = format!("basalt-test-{tag}");
    bind_queue(&exchange, &queue).await;
    let (seen, consumer) = consume(queue.clone());
    (exchange, queue, seen, consumer)
}

/// A consumer that survives broker restarts: every delivery's message id and routing
/// key, acked after it is recorded.
fn consume(queue: String) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Ok(channel) = conn.create_channel().await else {
                continue;
            };
            let Ok(mut consumer) = channel
                .basic_consume(
                    queue.as_str().into(),
                    "test".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
            else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            while let Some(Ok(delivery)) = consumer.next().await {
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
                sink.lock().unwrap().push((
                    id,
                    delivery.routing_key.to_string(),
                    delivery.properties.clone(),
                    body,
                ));
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        }
    });
    (seen, task)
}

async fn rabbitmq_gets_cloudevents_with_confirms(backend: Backend) {
    if !require_service(
        "RabbitMQ",
        "127.0.0.1:5672",
        "rabbitmq_gets_cloudevents_with_confirms",
    )
    .await
    {
        return;
    }
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let exchange = format!("basalt.test.{tag}");
    let queue = format!("basalt-test-{tag}");
    let app = TestApp::builder(backend)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;

    // No queue bound yet: the broker returns the message. Nobody asked for it, so it
    // counts as delivered (and unroutable) instead of blocking what follows.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "early"})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the broker returns the message",
        || async { (app.state.metrics.events.unroutable.get() > 0).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the returned event is done",
        || async { (app.state.events.backlog().await == 0).then_some(()) },
    )
    .await;

    bind_queue(&exchange, &queue).await;
    let (seen, consumer) = consume(queue.clone());
    for title in ["one", "two"] {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                None,
                Some(json!({"title": title})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let rows = events(&app).await;
    let posts: Vec<&outbox::Model> = rows
        .iter()
        .filter(|r| r.collection == "posts")
        .skip(1) // "early", unroutable
        .collect();
    eventually(
        Duration::from_secs(30),
        "two posts on the queue",
        || async {
            let seen = seen.lock().unwrap();
            (seen.iter().filter(|m| m.1 == "posts.created").count() >= 2).then_some(())
        },
    )
    .await;
    let messages = seen.lock().unwrap().clone();
    let mine: Vec<_> = messages.iter().filter(|m| m.1 == "posts.created").collect();
    let titles: Vec<&str> = mine
        .iter()
        .map(|m| m.3["data"]["record"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["one", "two"], "in order");
    for (message, row) in mine.iter().zip(&posts) {
        assert_eq!(message.0, row.id, "message_id is the event id");
        assert_eq!(message.3["id"], row.id.as_str());
        let properties = &message.2;
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            properties
                .content_type()
                .as_ref()
                .map(|s| s.to_string())
                .as_deref(),
            Some("application/cloudevents+json")
        );
    }
    eventually(Duration::from_secs(10), "nothing left unsent", || async {
        (app.state.events.backlog().await == 0).then_some(())
    })
    .await;
    // The gauges follow each drain pass: the metric may trail the table briefly.
    let metrics = eventually(
        Duration::from_secs(10),
        "the backlog gauge at 0",
        || async {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            metrics
                .contains("basalt_outbox_backlog 0")
                .then_some(metrics)
        },
    )
    .await;
    assert!(
        metrics.contains("basalt_events_confirm_duration_seconds_count"),
        "{metrics}"
    );
    consumer.abort();
    cleanup(&exchange, &queue).await;
}

async fn rabbitmq_outage_loses_no_event(backend: Backend) {
    let test = "rabbitmq_outage_loses_no_event";
    if !require_service("RabbitMQ", "127.0.0.1:5672", test).await
        || !require_tool("rabbitmqctl", test)
    {
        return;
    }
    let (exchange, queue, seen, consumer) = bound_consumer().await;
    let app = TestApp::builder(backend)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    let restart = basalt_tests::RabbitRestart;

    const WRITES: usize = 1000;
    let mut failed = 0;
    for i in 0..WRITES {
        if i == 300 {
            basalt_tests::rabbitmqctl(&["stop_app"]);
            let (status, body) = app.get_json("/api/ready").await;
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["data"]["rabbitmq"]["code"], "down", "{body}");
        }
        if i == 700 {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            let backlog: f64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("basalt_outbox_backlog "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0);
            assert!(
                backlog > 0.0,
                "events wait while the broker is down: {backlog}"
            );
            basalt_tests::rabbitmqctl(&["start_app"]);
        }
        let (status, _) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                None,
                Some(json!({"title": format!("w{i}")})),
            )
            .await;
        if status != 200 {
            failed += 1;
        }
    }
    drop(restart);
    assert_eq!(failed, 0, "every write succeeds, broker or not");
    let expected: HashSet<String> = events(&app)
        .await
        .into_iter()
        .filter(|r| r.collection == "posts")
        .map(|r| r.id)
        .collect();
    assert_eq!(expected.len(), WRITES);
    eventually(
        Duration::from_secs(120),
        "all 1000 events on the queue",
        || async {
            let seen = seen.lock().unwrap();
            let got: HashSet<&String> = seen
                .iter()
                .map(|m| &m.0)
                .filter(|id| expected.contains(*id))
                .collect();
            (got.len() == WRITES).then_some(())
        },
    )
    .await;
    let delivered = seen.lock().unwrap().len();
    eprintln!("{WRITES} distinct events; {delivered} deliveries (duplicates are allowed)");
    consumer.abort();
    cleanup(&exchange, &queue).await;
}

/// Several servers on one database. On PostgreSQL they share the outbox: concurrent
/// writes through both are each published once (`FOR UPDATE SKIP LOCKED`), which the
/// broker's deliveries and the two publish counters both show. SQLite takes one
/// server per file, so a second one is refused with a message saying why.
async fn rabbitmq_instances_share_one_outbox(backend: Backend) {
    if backend == Backend::Sqlite {
        let first = TestApp::spawn(backend).await;
        let refused = TestApp::builder(backend)
            .database_of(&first)
            .try_spawn()
            .await
            .err()
            .expect("a second server on one SQLite file is refused");
        let message = refused.to_string();
        assert!(message.contains("another Basalt is serving"), "{message}");
        assert!(message.contains("database_url"), "{message}");
        // The first one goes on serving.
        assert_eq!(first.get("/api/health").await.status(), 200);
        return;
    }
    if !require_service(
        "RabbitMQ",
        "127.0.0.1:5672",
        "rabbitmq_instances_share_one_outbox",
    )
    .await
    {
        return;
    }
    let (exchange, queue, seen, consumer) = bound_consumer().await;
    let a = TestApp::builder(backend)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = a.superuser_token().await;
    schema(&a, &admin).await;
    let b = TestApp::builder(backend)
        .database_of(&a)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;

    const WRITERS: usize = 4;
    const EACH: usize = 50;
    let mut writers = Vec::new();
    for (n, app) in [&a, &b].into_iter().enumerate() {
        for w in 0..WRITERS {
            writers.push(post_writer(app, EACH, format!("{n}-{w}")));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let total = 2 * WRITERS * EACH;
    let rows: HashSet<String> = events(&a)
        .await
        .into_iter()
        .filter(|r| r.collection == "posts")
        .map(|r| r.id)
        .collect();
    assert_eq!(rows.len(), total, "one event per write");
    eventually(Duration::from_secs(60), "every event delivered", || async {
        let seen = seen.lock().unwrap();
        let ids: HashSet<&String> = seen.iter().map(|m| &m.0).collect();
        (ids.len() >= total).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "nothing left unsent", || async {
        (a.state.events.backlog().await == 0).then_some(())
    })
    .await;
    // Give a stray second publish time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = seen.lock().unwrap().clone();
    let posts: Vec<&String> = messages
        .iter()
        .filter(|m| m.1 == "posts.created")
        .map(|m| &m.0)
        .collect();
    assert_eq!(posts.len(), total, "no event published twice");
    assert_eq!(
        posts.into_iter().cloned().collect::<HashSet<String>>(),
        rows
    );
    let published = |app: &TestApp| app.state.metrics.events.published.get();
    let all_rows = events(&a).await;
    assert!(all_rows.iter().all(|r| r.sent.is_some()));
    assert_eq!(
        published(&a) + published(&b),
        all_rows.len() as u64,
        "each row published by exactly one instance"
    );
    consumer.abort();
    b.stop().await;
    a.stop().await;
    cleanup(&exchange, &queue).await;
}

/// Issue #12 point 5: with a queue bound only to `flt.#` (a per-collection binding,
/// as the README suggests), writes to another collection are unroutable; they must
/// not hold back the events that do have a queue, and nothing stays in the outbox.
async fn rabbitmq_unroutable_events_hold_nothing_back(backend: Backend) {
    if !require_service(
        "RabbitMQ",
        "127.0.0.1:5672",
        "rabbitmq_unroutable_events_hold_nothing_back",
    )
    .await
    {
        return;
    }
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let exchange = format!("basalt.test.{tag}");
    let queue = format!("basalt-test-{tag}");
    bind_queue_to(&exchange, &queue, "flt.#").await;
    let (seen, consumer) = consume(queue.clone());
    let app = TestApp::builder(backend)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    for name in ["flt", "other"] {
        app.create_collection(
            &admin,
            json!({"name": name, "createRule": "", "fields": [{"name": "title", "type": "text"}]}),
        )
        .await;
    }
    for i in 0..5 {
        for name in ["other", "flt"] {
            let (status, _) = app
                .call(
                    Method::POST,
                    &format!("/api/collections/{name}/records"),
                    None,
                    Some(json!({"title": format!("{name}-{i}")})),
                )
                .await;
            assert_eq!(
                status, 204,
                "created; the view rule hides it from anonymous"
            );
        }
    }
    eventually(
        Duration::from_secs(20),
        "five flt events on the queue",
        || async { (seen.lock().unwrap().len() >= 5).then_some(()) },
    )
    .await;
    let titles: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.3["data"]["record"]["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        titles,
        (0..5).map(|i| format!("flt-{i}")).collect::<Vec<_>>()
    );
    eventually(Duration::from_secs(10), "an empty backlog", || async {
        (app.state.events.backlog().await == 0).then_some(())
    })
    .await;
    // The five `other` events, and the superuser's own records' events.
    eventually(
        Duration::from_secs(10),
        "unroutable events counted",
        || async {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            let count: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("basalt_events_unroutable_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            (count >= 5).then_some(())
        },
    )
    .await;
    consumer.abort();
    cleanup(&exchange, &queue).await;
}

/// Issue #12 point 10: the broker connection cut again and again while publishes wait
/// for their confirms (a loopback proxy the test controls). Every write succeeds and
/// every event reaches the queue at least once; none stays in the outbox.
async fn rabbitmq_cut_mid_confirm_loses_no_event(backend: Backend) {
    let test = "rabbitmq_cut_mid_confirm_loses_no_event";
    if !require_service("RabbitMQ", "127.0.0.1:5672", test).await {
        return;
    }
    let proxy = basalt_tests::faults::Proxy::start("127.0.0.1:5672").await;
    let (exchange, queue, seen, consumer) = bound_consumer().await;
    let app = TestApp::builder(backend)
        .setting(
            "amqp_url",
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
        )
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    const WRITERS: usize = 3;
    const EACH: usize = 100;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| post_writer(&app, EACH, format!("cut{w}")))
        .collect();
    // Cut while events are in flight, five times, then leave it up.
    for _ in 0..5 {
        eventually(
            Duration::from_secs(20),
            "events being published",
            || async { (app.state.metrics.events.published.get() > 0).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.resume().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: HashSet<String> = events(&app)
        .await
        .into_iter()
        .filter(|r| r.collection == "posts")
        .map(|r| r.id)
        .collect();
    assert_eq!(expected.len(), WRITERS * EACH);
    eventually(
        Duration::from_secs(60),
        "every event on the queue",
        || async {
            let seen = seen.lock().unwrap();
            let got: HashSet<&String> = seen
                .iter()
                .map(|m| &m.0)
                .filter(|id| expected.contains(*id))
                .collect();
            (got.len() == expected.len()).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(20), "an empty backlog", || async {
        (app.state.events.backlog().await == 0).then_some(())
    })
    .await;
    // Order per collection holds across the cuts: each writer's posts arrive in the
    // order they were written (first deliveries; redeliveries may repeat).
    let seen = seen.lock().unwrap().clone();
    for w in 0..WRITERS {
        let prefix = format!("cut{w}-");
        let mut firsts: Vec<usize> = Vec::new();
        let mut met = HashSet::new();
        for message in &seen {
            let title = message.3["data"]["record"]["title"]
                .as_str()
                .unwrap_or_default();
            if let Some(n) = title.strip_prefix(&prefix)
                && met.insert(title.to_owned())
            {
                firsts.push(n.parse().unwrap());
            }
        }
        assert_eq!(firsts, (0..EACH).collect::<Vec<_>>(), "writer {w} in order");
    }
    consumer.abort();
    cleanup(&exchange, &queue).await;
}

/// Without an external broker every outbox row is written as delivered, and the feed's,
/// the dispatcher's and the backlog gauge's queries use their keys whatever the
/// statistics: analyzed while the outbox was small, SQLite once scanned the whole table
/// for the feed's `seq > ?` at every commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_are_found_without_scanning_the_outbox() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "posts", "createRule": "", "viewRule": "", "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    for i in 0..200 {
        if i == 1 {
            // A schema change analyzes everything while the outbox holds one row.
            app.state.db.optimize(true).await.unwrap();
        }
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                None,
                Some(json!({"title": format!("p{i}")})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let db = &app.state.db;
    let scalar = |sql: &'static str| async move {
        let row = db
            .conn()
            .query_one_raw(Statement::from_string(db.database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    assert_eq!(
        scalar("SELECT COUNT(*) FROM _outbox WHERE sent IS NULL").await,
        0,
        "no broker: written as delivered"
    );
    assert!(scalar("SELECT COUNT(*) FROM _outbox").await >= 200);
    for (query, uses) in [
        (
            "SELECT seq FROM _outbox WHERE sent IS NULL AND collection NOT IN ('x') ORDER BY seq LIMIT 100",
            "idx_outbox_unsent",
        ),
        (
            "SELECT COUNT(*) FROM _outbox WHERE sent IS NULL",
            "idx_outbox_unsent",
        ),
        // The event feed, at every commit.
        (
            "SELECT * FROM _outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            "INTEGER PRIMARY KEY",
        ),
    ] {
        let rows = db
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                db.database_backend(),
                format!("EXPLAIN QUERY PLAN {query}"),
                (0..query.matches('?').count()).map(|_| sea_orm::Value::BigInt(Some(5))),
            ))
            .await
            .unwrap();
        let plan: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "detail").unwrap())
            .collect();
        assert!(
            plan.iter().any(|step| step.contains(uses))
                && !plan.iter().any(|step| step.starts_with("SCAN _outbox")),
            "{query}: {plan:?}"
        );
    }
}
