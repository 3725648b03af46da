//! WASM functions, part 2 (#18): after-event triggers (filter, retries with back-off,
//! dead letters and their replay, the CloudEvent id as idempotency key, commit order)
//! on the outbox path and on RabbitMQ's work queue; cron schedules (once per tick
//! across instances, overlaps skipped, missed ticks caught up or skipped); outbound
//! HTTP through the allowlist. The guest is the SDK's `faults` example: it notes
//! every event it accepts in `seen` and every tick in `ticks`.

use std::time::Duration;

use basalt_server::db::entities::outbox;
use basalt_tests::{Backend, TestApp, backend_tests, eventually, guest, json as read_json};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

backend_tests!(
    after_event_triggers_filter_retry_and_dead_letter,
    rabbitmq_triggers_consume_the_work_queue,
    rabbitmq_outage_loses_no_trigger_event,
    kill_9_loses_no_trigger_event,
    rabbitmq_kill_9_loses_no_trigger_event,
    schedules_tick_once_skip_overlaps_and_catch_up,
    outbound_http_goes_only_where_allowed,
);

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(20);

async fn deploy(app: &TestApp, admin: &str, manifest: Value) -> Value {
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .part(
            "component",
            reqwest::multipart::Part::bytes(guest("faults")).file_name("faults.wasm"),
        );
    let (status, body) = read_json(
        app.client
            .post(app.url("/api/functions"))
            .header("authorization", admin)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn schema(app: &TestApp, admin: &str) {
    let open = |name: &str, fields: Value| {
        json!({"name": name, "listRule": "", "viewRule": "", "createRule": "",
               "updateRule": "", "deleteRule": "", "fields": fields})
    };
    app.create_collection(
        admin,
        open("posts", json!([{"name": "title", "type": "text"}])),
    )
    .await;
    app.create_collection(
        admin,
        open(
            "seen",
            json!([{"name": "function", "type": "text"}, {"name": "title", "type": "text"},
                   {"name": "event", "type": "text"}, {"name": "record", "type": "text"},
                   {"name": "kind", "type": "text"}, {"name": "attempt", "type": "number"},
                   {"name": "fetched", "type": "text"}]),
        ),
    )
    .await;
    app.create_collection(
        admin,
        open(
            "ticks",
            json!([{"name": "function", "type": "text"}, {"name": "schedule", "type": "text"},
                   {"name": "due", "type": "text"}, {"name": "late", "type": "bool"}]),
        ),
    )
    .await;
}

async fn create(app: &TestApp, title: &str) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": title})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Records of `collection` matching `filter`, oldest first.
/// Every record of `collection` matching `filter`, page after page (a trigger's
/// duplicates can take a run past one page).
async fn list(app: &TestApp, collection: &str, filter: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let url = format!(
            "/api/collections/{collection}/records?perPage=500&page={page}&sort=id&filter={}",
            urlencode(filter)
        );
        let (status, body) = app.call(Method::GET, &url, None, None).await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let last = items.len() < 500;
        all.extend(items);
        if last {
            break;
        }
    }
    all
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Wait until `seen` has at least `count` rows matching `filter`; returns them.
async fn seen(app: &TestApp, filter: &str, count: usize) -> Vec<Value> {
    eventually(WAIT, &format!("{count} seen rows for {filter}"), || async {
        let rows = list(app, "seen", filter).await;
        (rows.len() >= count).then_some(rows)
    })
    .await
}

async fn deliveries(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/functions/deliveries?{query}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

async fn invocations(app: &TestApp, admin: &str, function: &str) -> Vec<Value> {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/functions/invocations?function={function}&limit=500"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

/// The outbox's CloudEvent id of the event for `record` of kind `action`.
async fn event_id(app: &TestApp, record: &str, action: &str) -> String {
    outbox::Entity::find()
        .filter(outbox::Column::Action.eq(action))
        .all(app.state.events.db().conn())
        .await
        .unwrap()
        .into_iter()
        .find(|row| serde_json::from_str::<Value>(&row.payload).unwrap()["subject"] == record)
        .map(|row| row.id)
        .unwrap_or_else(|| panic!("no {action} event for {record}"))
}

/// Everything a trigger does, on whichever path the app has (outbox cursors without
/// a broker, the work queue with one).
async fn triggers_behave(app: &TestApp, admin: &str) {
    deploy(
        app,
        admin,
        json!({"name": "watcher", "triggers": ["posts.created", "posts.updated"],
               "filter": "title != 'skip me'",
               "retries": {"maxAttempts": 3, "backoffMs": 50}}),
    )
    .await;
    deploy(
        app,
        admin,
        json!({"name": "fragile", "triggers": ["posts.created"], "filter": "title ~ 'flaky two'",
               "retries": {"maxAttempts": 2, "backoffMs": 50}}),
    )
    .await;
    // Non-superusers see no deliveries.
    let (status, _) = app
        .call(Method::GET, "/api/functions/deliveries", None, None)
        .await;
    assert!(status == 401 || status == 403, "{status}");

    // Delivered with the CloudEvent id as the idempotency key.
    let hello = create(app, "hello").await;
    let hello_id = hello["id"].as_str().unwrap();
    let rows = seen(app, &format!("record = '{hello_id}'"), 1).await;
    assert_eq!(rows[0]["kind"], "basalt.record.created");
    assert_eq!(rows[0]["attempt"], 1);
    assert_eq!(rows[0]["function"], "watcher");
    assert_eq!(rows[0]["event"], event_id(app, hello_id, "created").await);

    // The filter keeps an event away; actions not subscribed to are not delivered.
    let skipped = create(app, "skip me").await;
    let after = create(app, "after skip").await;
    seen(
        app,
        &format!("record = '{}'", after["id"].as_str().unwrap()),
        1,
    )
    .await;
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!(
                "/api/collections/posts/records/{}",
                after["id"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Per-record events in commit order.
    for i in 0..10 {
        let (status, body) = app
            .call(
                Method::PATCH,
                &format!("/api/collections/posts/records/{hello_id}"),
                None,
                Some(json!({"title": format!("order {i}")})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let updates = seen(
        app,
        &format!("record = '{hello_id}' && kind = 'basalt.record.updated'"),
        10,
    )
    .await;
    let titles: Vec<&str> = updates
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("order {i}")).collect();
    assert_eq!(
        titles, expected,
        "updates reached the trigger in commit order"
    );

    // Fails twice, succeeds on the third attempt: one success.
    let flaky = create(app, "flaky one").await;
    let flaky_id = flaky["id"].as_str().unwrap();
    let rows = seen(
        app,
        &format!("record = '{flaky_id}' && function = 'watcher'"),
        1,
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["attempt"], 3);

    // Always failing: dead-lettered after its attempts, with the error.
    let poison = create(app, "poison").await;
    let poison_id = poison["id"].as_str().unwrap().to_owned();
    let dead = eventually(WAIT, "the poison event's dead letter", || async {
        deliveries(app, admin, "state=dead&function=watcher")
            .await
            .into_iter()
            .find(|d| d["event"]["subject"] == poison_id.as_str())
    })
    .await;
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert!(dead["error"].as_str().unwrap().contains("poison"), "{dead}");
    assert_eq!(dead["trigger"], "posts.created");

    // `fragile` gives up on "flaky two" after two attempts; a replay's third works.
    let two = create(app, "flaky two").await;
    let two_id = two["id"].as_str().unwrap().to_owned();
    let dead = eventually(WAIT, "fragile's dead letter", || async {
        deliveries(app, admin, "state=dead&function=fragile")
            .await
            .into_iter()
            .find(|d| d["event"]["subject"] == two_id.as_str())
    })
    .await;
    assert_eq!(dead["attempts"], 2);
    let (status, replayed) = app
        .call(
            Method::POST,
            &format!(
                "/api/functions/deliveries/{}/replay",
                dead["id"].as_str().unwrap()
            ),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["state"], "retry");
    let rows = seen(
        app,
        &format!("record = '{two_id}' && function = 'fragile'"),
        1,
    )
    .await;
    assert_eq!(rows[0]["attempt"], 3);
    eventually(WAIT, "the replayed delivery to be done", || async {
        deliveries(app, admin, "function=fragile")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // Replaying what is not a dead letter is a 404.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/functions/deliveries/nope/replay",
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Every successful call noted one row: `ok` invocations and `seen` rows agree.
    let watcher_rows = list(app, "seen", "function = 'watcher'").await.len();
    let oks = eventually(WAIT, "the invocation log to catch up", || async {
        let oks = invocations(app, admin, "watcher")
            .await
            .iter()
            .filter(|i| i["outcome"] == "ok")
            .count();
        (oks == watcher_rows).then_some(oks)
    })
    .await;
    assert!(oks >= 13, "{oks}");
    let failed = invocations(app, admin, "watcher")
        .await
        .iter()
        .filter(|i| i["outcome"] == "failed")
        .count();
    assert!(
        failed >= 5,
        "two flaky failures and three poison ones: {failed}"
    );
    assert!(
        list(
            app,
            "seen",
            &format!("record = '{}'", skipped["id"].as_str().unwrap())
        )
        .await
        .is_empty(),
        "the filtered-out event was delivered"
    );
    assert!(
        list(app, "seen", "kind = 'basalt.record.deleted'")
            .await
            .is_empty(),
        "a delete reached a trigger that does not subscribe to deletes"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"basalt_function_dead_letters_total{function="watcher"} 1"#),
        "{metrics}"
    );
}

async fn after_event_triggers_filter_retry_and_dead_letter(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("outbox_retention", "0s")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    // Deployed after some writes: a trigger sees changes from its deploy on.
    let before = create(&app, "before the trigger").await;
    triggers_behave(&app, &admin).await;
    assert!(
        list(
            &app,
            "seen",
            &format!("record = '{}'", before["id"].as_str().unwrap())
        )
        .await
        .is_empty()
    );
    // The outbox keeps what a cursor has not passed, whatever its retention (zero
    // here): another instance holds the cursors' leases for a while, so this one
    // cannot deliver; pruning leaves the waiting event; once the leases lapse, it is
    // delivered.
    use basalt_server::db::entities::function_cursors;
    function_cursors::Entity::update_many()
        .col_expr(
            function_cursors::Column::Owner,
            sea_orm::sea_query::Expr::value("elsewhere"),
        )
        .col_expr(
            function_cursors::Column::LeaseUntil,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() + chrono::Duration::seconds(3)),
        )
        .exec(app.state.db.conn())
        .await
        .unwrap();
    let late = create(&app, "while another instance holds the cursor").await;
    let late_id = late["id"].as_str().unwrap().to_owned();
    app.state.events.prune().await;
    let kept = outbox::Entity::find()
        .all(app.state.events.db().conn())
        .await
        .unwrap()
        .into_iter()
        .any(|r| serde_json::from_str::<Value>(&r.payload).unwrap()["subject"] == late_id.as_str());
    assert!(
        kept,
        "pruning took an event a trigger's cursor had not passed"
    );
    assert!(
        list(&app, "seen", &format!("record = '{late_id}'"))
            .await
            .is_empty()
    );
    seen(&app, &format!("record = '{late_id}'"), 1).await;
}

async fn rabbitmq_triggers_consume_the_work_queue(backend: Backend) {
    if !basalt_tests::require_service(
        "RabbitMQ",
        "127.0.0.1:5672",
        "rabbitmq_triggers_consume_the_work_queue",
    )
    .await
    {
        return;
    }
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let exchange = format!("basalt.test.{tag}.events");
    let app = TestApp::builder(backend)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    triggers_behave(&app, &admin).await;

    // The dead letter went to the dead-letter queue too, with the error.
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let dlq = format!("basalt.test.{tag}.functions.dlq");
    let message = eventually(WAIT, "a message on the dead-letter queue", || async {
        channel
            .basic_get(
                dlq.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .ok()
            .flatten()
    })
    .await;
    let event: Value = serde_json::from_slice(&message.delivery.data).unwrap();
    assert_eq!(event["type"], "basalt.record.created");
    let headers = message.delivery.properties.headers().clone().unwrap();
    let error = match headers.inner().get("x-basalt-error") {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        other => panic!("no error header: {other:?}"),
    };
    assert!(error.contains("poison"), "{error}");
    for queue in [format!("basalt.test.{tag}.functions"), dlq] {
        let _ = channel
            .queue_delete(
                queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let _ = channel
        .exchange_delete(
            exchange.as_str().into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
}

async fn ticks(app: &TestApp, function: &str) -> Vec<Value> {
    list(app, "ticks", &format!("function = '{function}'")).await
}

async fn schedules_tick_once_skip_overlaps_and_catch_up(backend: Backend) {
    use basalt_server::db::entities::function_schedules;
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    // On PostgreSQL a second instance shares the database: each tick runs once.
    let other = match backend {
        Backend::Postgres => Some(TestApp::builder(backend).database_of(&app).spawn().await),
        Backend::Sqlite => None,
    };
    let (status, body) = {
        let form = reqwest::multipart::Form::new()
            .text(
                "manifest",
                json!({"name": "bad-cron", "schedules": [{"cron": "* * *"}]}).to_string(),
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(guest("faults")).file_name("f.wasm"),
            );
        read_json(
            app.client
                .post(app.url("/api/functions"))
                .header("authorization", &admin)
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    assert_eq!(status, 400, "{body}");
    assert!(body["data"]["schedules.0"].is_object(), "{body}");

    deploy(
        &app,
        &admin,
        json!({"name": "ticker", "schedules": [{"cron": "* * * * * *"}]}),
    )
    .await;
    let rows = eventually(WAIT, "four ticks", || async {
        let rows = ticks(&app, "ticker").await;
        (rows.len() >= 4).then_some(rows)
    })
    .await;
    let mut dues: Vec<&str> = rows.iter().map(|r| r["due"].as_str().unwrap()).collect();
    let all = dues.len();
    dues.sort_unstable();
    dues.dedup();
    assert_eq!(dues.len(), all, "a tick ran twice: {rows:?}");
    assert!(rows.iter().all(|r| r["late"] == false));
    let (status, listed) = app
        .call(Method::GET, "/api/functions/ticker", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert!(listed["schedules"][0]["next"].is_string(), "{listed}");

    // A run longer than the period: the ticks meanwhile are skipped, and logged.
    deploy(
        &app,
        &admin,
        json!({"name": "slow-ticks", "schedules": [{"cron": "* * * * * *"}],
               "limits": {"timeoutMs": 5000}}),
    )
    .await;
    eventually(WAIT, "a skipped overlapping tick", || async {
        invocations(&app, &admin, "slow-ticks")
            .await
            .into_iter()
            .find(|i| i["outcome"] == "skipped")
            .filter(|i| {
                i["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("still going")
            })
    })
    .await;

    // Ticks missed while no server ran: caught up once when asked, else skipped.
    for (name, catch_up) in [("daily-catch-up", true), ("daily-no-catch-up", false)] {
        deploy(
            &app,
            &admin,
            json!({"name": name, "schedules": [{"cron": "0 3 * * *", "timezone": "Europe/Paris",
                                                "catchUp": catch_up}]}),
        )
        .await;
        eventually(WAIT, "the schedule's row", || async {
            function_schedules::Entity::find_by_id((name.to_owned(), "0 3 * * *".to_owned()))
                .one(app.state.db.conn())
                .await
                .unwrap()
        })
        .await;
        function_schedules::Entity::update_many()
            .col_expr(
                function_schedules::Column::LastTick,
                sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::days(3)),
            )
            .filter(function_schedules::Column::Function.eq(name))
            .exec(app.state.db.conn())
            .await
            .unwrap();
    }
    let caught = eventually(WAIT, "the missed tick run late", || async {
        let rows = ticks(&app, "daily-catch-up").await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    eventually(WAIT, "the missed tick skipped", || async {
        invocations(&app, &admin, "daily-no-catch-up")
            .await
            .into_iter()
            .find(|i| i["outcome"] == "skipped")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let caught_after = ticks(&app, "daily-catch-up").await;
    assert_eq!(
        caught_after.len(),
        1,
        "the missed ticks ran once: {caught_after:?}"
    );
    assert_eq!(caught[0]["late"], true);
    assert!(ticks(&app, "daily-no-catch-up").await.is_empty());
    drop(other);
}

/// A one-route HTTP server on loopback answering `hello from loopback`.
async fn loopback_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                // `/big` answers more than a function may receive (4 MiB); `/slow`
                // never answers.
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                if head.starts_with("GET /slow") {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let body = if head.starts_with("GET /big") {
                    "x".repeat(5 << 20)
                } else {
                    "hello from loopback".to_owned()
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

async fn outbound_http_goes_only_where_allowed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    let port = loopback_server().await;
    // The machine's own host name resolves to a loopback or private address here.
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(Iterator::collect)
        .unwrap_or_default();
    assert!(
        !resolved.is_empty()
            && resolved
                .iter()
                .all(|a| basalt_server::functions::outbound::restricted(a.ip())),
        "this test needs the host name `{host}` to resolve to private addresses: {resolved:?}"
    );
    let bad = deploy_status(
        &app,
        &admin,
        json!({"name": "bad-outbound", "outbound": ["ftp://x"]}),
    )
    .await;
    assert_eq!(bad, 400);
    for (name, outbound) in [
        ("allowed", json!([format!("http://127.0.0.1:{port}")])),
        ("closed", json!([])),
        ("by-name", json!([format!("http://{host}:*")])),
    ] {
        deploy(
            &app,
            &admin,
            json!({"name": name, "triggers": ["posts.created"], "outbound": outbound,
                   "retries": {"maxAttempts": 1, "backoffMs": 10}}),
        )
        .await;
    }
    let direct = create(&app, &format!("fetch http://127.0.0.1:{port}/hi")).await;
    let rows = seen(
        &app,
        &format!("record = '{}'", direct["id"].as_str().unwrap()),
        3,
    )
    .await;
    let fetched = |function: &str| {
        rows.iter()
            .find(|r| r["function"] == function)
            .map(|r| r["fetched"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(fetched("allowed"), "200 hello from loopback");
    assert!(
        fetched("closed").contains("HttpRequestDenied"),
        "{}",
        fetched("closed")
    );
    assert!(
        fetched("by-name").contains("HttpRequestDenied"),
        "{}",
        fetched("by-name")
    );
    // Listed by name, the name resolves to a private address: refused after the
    // lookup, before any connection.
    let named = create(&app, &format!("fetch http://{host}:{port}/hi")).await;
    let rows = seen(
        &app,
        &format!("record = '{}'", named["id"].as_str().unwrap()),
        3,
    )
    .await;
    let by_name = rows
        .iter()
        .find(|r| r["function"] == "by-name")
        .map(|r| r["fetched"].as_str().unwrap_or_default().to_owned())
        .unwrap();
    assert!(by_name.contains("DestinationIpProhibited"), "{by_name}");
    let allowed = rows
        .iter()
        .find(|r| r["function"] == "allowed")
        .map(|r| r["fetched"].as_str().unwrap_or_default().to_owned())
        .unwrap();
    assert!(
        allowed.contains("HttpRequestDenied"),
        "another host than the one listed: {allowed}"
    );
    // A response past the size limit fails that request (the function goes on).
    let big = create(&app, &format!("fetch http://127.0.0.1:{port}/big")).await;
    let rows = seen(
        &app,
        &format!(
            "record = '{}' && function = 'allowed'",
            big["id"].as_str().unwrap()
        ),
        1,
    )
    .await;
    let fetched = rows[0]["fetched"].as_str().unwrap_or_default();
    assert!(fetched.contains("HttpResponseBodySize"), "{fetched}");
    // A destination that never answers: the call ends at the function's time limit
    // (the request with it), and the event is dead-lettered after its one attempt.
    let slow = create(&app, &format!("fetch http://127.0.0.1:{port}/slow")).await;
    let slow_id = slow["id"].as_str().unwrap().to_owned();
    let dead = eventually(WAIT, "the slow fetch's dead letter", || async {
        deliveries(&app, &admin, "state=dead&function=allowed")
            .await
            .into_iter()
            .find(|d| d["event"]["subject"] == slow_id.as_str())
    })
    .await;
    assert!(
        dead["error"].as_str().unwrap().contains("time limit"),
        "{dead}"
    );
}

async fn deploy_status(app: &TestApp, admin: &str, manifest: Value) -> u16 {
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .part(
            "component",
            reqwest::multipart::Part::bytes(guest("faults")).file_name("f.wasm"),
        );
    app.client
        .post(app.url("/api/functions"))
        .header("authorization", admin)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue #18 point 3: RabbitMQ stopped (`rabbitmqctl stop_app`) during 500 writes
/// with a trigger deployed, then started: the function sees every event id
/// (duplicates allowed, none lost).
async fn rabbitmq_outage_loses_no_trigger_event(backend: Backend) {
    let test = "rabbitmq_outage_loses_no_trigger_event";
    if !basalt_tests::require_service("RabbitMQ", "127.0.0.1:5672", test).await
        || !basalt_tests::require_tool("rabbitmqctl", test)
    {
        return;
    }
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let exchange = format!("basalt.test.{tag}.events");
    let app = TestApp::builder(backend)
        .setting("amqp_url", AMQP)
        .setting("amqp_exchange", exchange.clone())
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    schema(&app, &admin).await;
    deploy(
        &app,
        &admin,
        json!({"name": "watcher", "triggers": ["posts.created"]}),
    )
    .await;
    let restart = basalt_tests::RabbitRestart;
    const WRITES: usize = 500;
    for i in 0..WRITES {
        if i == 150 {
            basalt_tests::rabbitmqctl(&["stop_app"]);
        }
        if i == 350 {
            basalt_tests::rabbitmqctl(&["start_app"]);
        }
        create(&app, &format!("w{i}")).await;
    }
    drop(restart);
    let expected: std::collections::HashSet<String> = outbox::Entity::find()
        .filter(outbox::Column::Collection.eq("posts"))
        .all(app.state.events.db().conn())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(expected.len(), WRITES);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let deliveries = loop {
        let rows = list(&app, "seen", "function = 'watcher'").await;
        let got: std::collections::HashSet<String> = rows
            .iter()
            .filter_map(|r| r["event"].as_str())
            .filter(|id| expected.contains(*id))
            .map(str::to_owned)
            .collect();
        if got.len() == WRITES {
            break rows.len();
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<&String> = expected.difference(&got).collect();
            panic!(
                "{} of {WRITES} events never reached the function (e.g. {:?}).\n{}",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                why_not_seen(&app, &admin, "watcher").await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("{WRITES} events; {deliveries} deliveries (duplicates are allowed)");
    cleanup(&tag, &exchange).await;
}

/// What the server knows of a trigger's missing events: its retries and dead letters,
/// its calls' outcomes, and the event and function counters.
async fn why_not_seen(app: &TestApp, admin: &str, function: &str) -> String {
    let waiting: Vec<String> = deliveries(app, admin, &format!("function={function}"))
        .await
        .iter()
        .map(|d| {
            format!(
                "{} after {} attempts: {}",
                d["state"], d["attempts"], d["error"]
            )
        })
        .collect();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for call in invocations(app, admin, function).await {
        *outcomes
            .entry(format!("{} {}", call["outcome"], call["error"]))
            .or_default() += 1;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("basalt_events_") || l.starts_with("basalt_function_"))
        .collect();
    format!(
        "retries and dead letters: {waiting:#?}\nlatest calls by outcome: {outcomes:#?}\ncounters: {counters:#?}"
    )
}

async fn cleanup(tag: &str, exchange: &str) {
    let Ok(conn) = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    let Ok(channel) = conn.create_channel().await else {
        return;
    };
    for queue in [
        format!("basalt.test.{tag}.functions"),
        format!("basalt.test.{tag}.functions.dlq"),
    ] {
        let _ = channel
            .queue_delete(
                queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let _ = channel
        .exchange_delete(
            exchange.into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
}

async fn kill_9_loses_no_trigger_event(backend: Backend) {
    kill_9_scenario(backend, None).await;
}

async fn rabbitmq_kill_9_loses_no_trigger_event(backend: Backend) {
    if !basalt_tests::require_service(
        "RabbitMQ",
        "127.0.0.1:5672",
        "rabbitmq_kill_9_loses_no_trigger_event",
    )
    .await
    {
        return;
    }
    let tag = uuid::Uuid::now_v7().simple().to_string();
    kill_9_scenario(backend, Some(tag)).await;
}

/// Issue #18 point 3: the real binary `kill -9`ed while writes and trigger calls are
/// under way, then restarted on the same data: every committed create's event reaches
/// the function (on the outbox path, or RabbitMQ's work queue with `tag`).
async fn kill_9_scenario(backend: Backend, tag: Option<String>) {
    use basalt_tests::process::{self, BasaltProcess};
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Postgres => Some(basalt_tests::postgres::TestDatabase::create().await),
        Backend::Sqlite => None,
    };
    let database_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite:{}", dir.path().join("data.db").display()),
    };
    let exchange = tag.as_ref().map(|t| format!("basalt.test.{t}.events"));
    let command = || {
        let mut cmd = process::command(dir.path());
        cmd.env("BASALT_DATABASE_URL", &database_url);
        if let Some(exchange) = &exchange {
            cmd.env("BASALT_AMQP_URL", AMQP)
                .env("BASALT_AMQP_EXCHANGE", exchange);
        }
        cmd
    };
    let mut upsert = command();
    upsert.args(["superuser", "upsert", "root@example.com", "root-password"]);
    let (status, _, logs) = process::run(upsert, Duration::from_secs(60)).await;
    assert!(status.success(), "{logs:?}");
    let (mut server, url) = BasaltProcess::start(command()).await;
    let client = basalt_tests::client();
    let token: Value = client
        .post(format!(
            "{url}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": "root@example.com", "password": "root-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let open = |name: &str, fields: Value| json!({"name": name, "listRule": "", "viewRule": "", "createRule": "", "fields": fields});
    for collection in [
        open("posts", json!([{"name": "title", "type": "text"}])),
        open(
            "seen",
            json!([{"name": "function", "type": "text"}, {"name": "title", "type": "text"},
                   {"name": "event", "type": "text"}, {"name": "record", "type": "text"},
                   {"name": "kind", "type": "text"}, {"name": "attempt", "type": "number"},
                   {"name": "fetched", "type": "text"}]),
        ),
    ] {
        let res = client
            .post(format!("{url}/api/collections"))
            .header("Authorization", &token)
            .json(&collection)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let form = reqwest::multipart::Form::new()
        .text(
            "manifest",
            json!({"name": "watcher", "triggers": ["posts.created"]}).to_string(),
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(guest("faults")).file_name("f.wasm"),
        );
    let res = client
        .post(format!("{url}/api/functions"))
        .header("Authorization", &token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );

    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, acknowledged) = (
                client.clone(),
                url.clone(),
                std::sync::Arc::clone(&acknowledged),
            );
            tokio::spawn(async move {
                for i in 0..125 {
                    let sent = client
                        .post(format!("{url}/api/collections/posts/records"))
                        .json(&json!({"title": format!("{w}-{i}")}))
                        .send()
                        .await;
                    let Ok(res) = sent else { return };
                    if res.status() != 200 {
                        return;
                    }
                    *acknowledged.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "writes under way", || async {
        (*acknowledged.lock().unwrap() >= 200).then_some(())
    })
    .await;
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10)).await;
    for writer in writers {
        writer.await.unwrap();
    }

    let (again, url) = BasaltProcess::start(command()).await;
    let get = |path: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            let body: Value = client
                .get(path)
                .header("Authorization", &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body
        }
    };
    let mut posts = std::collections::HashSet::new();
    let mut page = 1;
    loop {
        let body = get(format!(
            "{url}/api/collections/posts/records?perPage=500&page={page}"
        ))
        .await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        posts.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        if items.len() < 500 {
            break;
        }
        page += 1;
    }
    assert!(posts.len() >= 200, "{}", posts.len());
    let deliveries = eventually(
        Duration::from_secs(120),
        "every committed create at the function",
        || {
            let get = &get;
            let (url, posts) = (&url, &posts);
            async move {
                let mut seen = std::collections::HashSet::new();
                let mut total = 0;
                let mut page = 1;
                loop {
                    let body = get(format!(
                        "{url}/api/collections/seen/records?perPage=500&page={page}&skipTotal=1"
                    ))
                    .await;
                    let items = body["items"].as_array().cloned().unwrap_or_default();
                    total += items.len();
                    seen.extend(
                        items
                            .iter()
                            .filter_map(|s| s["record"].as_str().map(str::to_owned)),
                    );
                    if items.len() < 500 {
                        break;
                    }
                    page += 1;
                }
                posts.iter().all(|p| seen.contains(p)).then_some(total)
            }
        },
    )
    .await;
    eprintln!(
        "{} committed creates; {deliveries} deliveries (duplicates are allowed)",
        posts.len()
    );
    drop(again);
    drop(pg);
    if let (Some(tag), Some(exchange)) = (&tag, &exchange) {
        cleanup(tag, exchange).await;
    }
}
