//! Issue #19: several real `basalt` processes on one PostgreSQL, Redis and RabbitMQ
//! behave as one — realtime across instances (no sticky sessions), schema changes
//! served everywhere within a second with no 5xx, shared rate limits and identity
//! cache, Redis outages survived, and nginx round-robin in front for the PocketBase
//! SDK.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use basalt_tests::instances::{Instances, Nginx, call};
use basalt_tests::sse::Stream;
use basalt_tests::{OwnRedis, eventually, free_port, require_service, require_tool};
use reqwest::Method;
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

/// Everything a multi-instance test needs, or `false` (skipped loudly; under CI=true
/// a failure).
async fn services(test: &str, rabbitmq: bool) -> bool {
    basalt_tests::postgres::available_or_skip(test).await
        && require_service("Redis", "127.0.0.1:6379", test).await
        && (!rabbitmq || require_service("RabbitMQ", "127.0.0.1:5672", test).await)
}

/// A user of `users` on `url`: (id, token).
async fn user(
    client: &reqwest::Client,
    url: &str,
    email: &str,
    password: &str,
) -> (String, String) {
    let (status, body) = call(
        client,
        Method::POST,
        &format!("{url}/api/collections/users/records"),
        None,
        Some(json!({"email": email, "password": password, "passwordConfirm": password})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        client,
        Method::POST,
        &format!("{url}/api/collections/users/auth-with-password"),
        None,
        Some(json!({"identity": email, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (id, body["token"].as_str().unwrap().to_owned())
}

/// Points 1–4 and 7: three instances on PostgreSQL, the machine's Redis and RabbitMQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_three_instances_behave_as_one() {
    let test = "scaleout::rabbitmq_three_instances_behave_as_one";
    if !services(test, true).await {
        return;
    }
    let exchange = format!("scaleout-{}", uuid::Uuid::now_v7().simple());
    let cluster = Instances::start(
        3,
        &[
            ("BASALT_REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            (
                "BASALT_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            ),
            ("BASALT_AMQP_EXCHANGE", exchange),
            ("BASALT_RATE_LIMIT_AUTH", "3/1m".to_owned()),
        ],
    )
    .await;
    let client = basalt_tests::client();
    let [a, b, c] = [0, 1, 2].map(|i| cluster.urls[i].clone());
    let admin = cluster.admin.clone();

    // Point 7: every instance sees the three heartbeats.
    for url in [&a, &b, &c] {
        eventually(SOON, "three live instances", || async {
            let (status, body) = call(
                &client,
                Method::GET,
                &format!("{url}/api/instances"),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            (body["shared"] == true && body["items"].as_array().map(Vec::len) == Some(3))
                .then_some(())
        })
        .await;
    }
    let (status, _) = call(
        &client,
        Method::GET,
        &format!("{b}/api/instances"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 401, "superusers only");

    // Point 3: a collection created through A is served by B and C — REST, the
    // GraphQL schema, OpenAPI and its rules — within a second.
    let created = Instant::now();
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{a}/api/collections"),
        Some(&admin),
        Some(json!({
            "name": "notes", "listRule": "", "viewRule": "", "createRule": "",
            "updateRule": "", "deleteRule": "",
            "fields": [{"name": "title", "type": "text"}]
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let title_id = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "title")
        .expect("the title field")["id"]
        .clone();
    for url in [&b, &c] {
        eventually(
            Duration::from_secs(1),
            "the new collection elsewhere",
            || async {
                let (status, _) = call(
                    &client,
                    Method::GET,
                    &format!("{url}/api/collections/notes/records"),
                    None,
                    None,
                )
                .await;
                let sdl = client
                    .get(format!("{url}/graphql/schema.graphql"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let (_, openapi) = call(
                    &client,
                    Method::GET,
                    &format!("{url}/api/openapi.json"),
                    None,
                    None,
                )
                .await;
                (status == 200
                    && sdl.contains("notes")
                    && openapi["paths"]
                        .get("/api/collections/notes/records")
                        .is_some())
                .then_some(())
            },
        )
        .await;
    }
    let propagated = created.elapsed();
    assert!(propagated < Duration::from_millis(1500), "{propagated:?}");

    // A function deployed through A is served by B and C within a second too.
    let form = reqwest::multipart::Form::new()
        .text(
            "manifest",
            json!({"name": "hi", "triggers": ["http"]}).to_string(),
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(basalt_tests::guest("faults")).file_name("f.wasm"),
        );
    let res = client
        .post(format!("{a}/api/functions"))
        .header("Authorization", &admin)
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
    for url in [&b, &c] {
        eventually(Duration::from_secs(1), "the function elsewhere", || async {
            let (status, _) = call(
                &client,
                Method::GET,
                &format!("{url}/api/functions/hi/hello"),
                None,
                None,
            )
            .await;
            (status == 200).then_some(())
        })
        .await;
    }

    // … and under load, with no 5xx while it changes: writers and readers on B and
    // C while A adds a field, tightens a rule and renames a field.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = [&b, &c, &b, &c]
        .into_iter()
        .enumerate()
        .map(|(n, url)| {
            let (client, url) = (client.clone(), url.clone());
            let (stop, errors, served) = (stop.clone(), errors.clone(), served.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = if n % 2 == 0 {
                        call(
                            &client,
                            Method::POST,
                            &format!("{url}/api/collections/notes/records"),
                            None,
                            Some(json!({"title": "under load"})),
                        )
                        .await
                    } else {
                        call(
                            &client,
                            Method::GET,
                            &format!("{url}/api/collections/notes/records?perPage=5&sort=-created"),
                            None,
                            None,
                        )
                        .await
                    };
                    if status >= 500 {
                        errors.fetch_add(1, Ordering::Relaxed);
                        seen.push(format!("{status} {body}"));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alter = |body: Value| {
        let (client, a, admin, cluster) = (&client, &a, &admin, &cluster);
        async move {
            let (status, body) = call(
                client,
                Method::PATCH,
                &format!("{a}/api/collections/notes"),
                Some(admin),
                Some(body),
            )
            .await;
            assert_eq!(status, 200, "{body}\nA's log: {:#?}", cluster.problems(0));
            body
        }
    };
    let notes = alter(json!({"fields": [
        {"id": title_id, "name": "title", "type": "text"}, {"name": "mood", "type": "text"}
    ]}))
    .await;
    let mood_id = notes["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "mood")
        .expect("the new field")["id"]
        .clone();
    eventually(Duration::from_secs(1), "the new field on B", || async {
        let (status, _) = call(
            &client,
            Method::POST,
            &format!("{b}/api/collections/notes/records"),
            None,
            Some(json!({"title": "t", "mood": "calm"})),
        )
        .await;
        (status == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alter(json!({"listRule": "title != 'hidden'"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alter(json!({"listRule": "heading != 'hidden'", "fields": [
        {"id": title_id, "name": "heading", "type": "text"},
        {"id": mood_id, "name": "mood", "type": "text"}
    ]}))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    assert!(served.load(Ordering::Relaxed) > 50, "the load ran");
    let logged: Vec<_> = cluster
        .processes
        .iter()
        .flat_map(|p| p.json_logs())
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert!(
        failures.is_empty(),
        "5xx during schema changes: {failures:?}\nlogged: {logged:#?}"
    );
    let (status, body) = call(
        &client,
        Method::GET,
        &format!("{c}/api/collections/notes/records?perPage=1&sort=-created"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["items"][0].get("heading").is_some(),
        "renamed on C: {body}"
    );

    // Point 2: the stream on A, its subscriptions set through B, events from writes
    // through C; per-subscriber rules hold.
    let (ann_id, ann) = user(&client, &a, "ann@example.com", "ann-password-1").await;
    let (_, bob) = user(&client, &c, "bob@example.com", "bob-password-1").await;
    let (status, body) = call(
        &client,
        Method::PATCH,
        &format!("{c}/api/collections/notes"),
        Some(&admin),
        Some(json!({"viewRule": "heading != 'secret' || @request.auth.email = 'bob@example.com'"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut stream = Stream::open(&client, &a).await;
    let topics = vec!["notes".to_owned()];
    assert_eq!(
        stream.subscribe(&client, &b, Some(&ann), &topics).await,
        204
    );
    assert_eq!(
        stream.subscribe(&client, &c, Some(&bob), &topics).await,
        403,
        "another identity may not take the client over, from any instance"
    );
    let unknown = Stream::open(&client, &b).await;
    drop(unknown);
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("{c}/api/realtime"),
        None,
        Some(json!({"clientId": "nobody-has-this", "subscriptions": ["notes"]})),
    )
    .await;
    assert_eq!(status, 404);
    for (url, heading) in [
        (&c, "secret"),
        (&b, "from b"),
        (&c, "from c"),
        (&a, "from a"),
    ] {
        let (status, body) = call(
            &client,
            Method::POST,
            &format!("{url}/api/collections/notes/records"),
            Some(&ann),
            Some(json!({"heading": heading})),
        )
        .await;
        // Created either way; ann may not view the secret one, so nothing comes back.
        let expected = if heading == "secret" { 204 } else { 200 };
        assert_eq!(status, expected, "{body}");
    }
    let mut headings = Vec::new();
    for _ in 0..3 {
        let (name, data) = stream.next(SOON).await.expect("an event from any instance");
        assert_eq!(name, "notes");
        assert_eq!(data["action"], "create");
        headings.push(data["record"]["heading"].as_str().unwrap().to_owned());
    }
    assert_eq!(headings, ["from b", "from c", "from a"], "in commit order");
    assert!(
        stream.next(Duration::from_millis(500)).await.is_none(),
        "the secret note reached ann: her view rule holds on every instance"
    );

    // … and GraphQL subscriptions the same way: graphql-ws on A, writes through B and C.
    if require_tool("node", test) && require_tool("npm", test) {
        let dir = super::graphql::install_clients();
        let output = tokio::process::Command::new("node")
            .arg("scaleout.mjs")
            .current_dir(&dir)
            .env("SUB_URL", &a)
            .env("WRITE_URLS", format!("{b},{c}"))
            .env("TOKEN", &ann)
            .output()
            .await
            .expect("run node");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("ok graphql subscription"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Point 4: password attempts count across instances (bob's sign-in through C
    // was the first of his three)…
    for (n, url) in [&a, &b, &c, &a].into_iter().enumerate() {
        let (status, body) = call(
            &client,
            Method::POST,
            &format!("{url}/api/collections/users/auth-with-password"),
            None,
            Some(json!({"identity": "bob@example.com", "password": "wrong"})),
        )
        .await;
        let expected = if n < 2 { 400 } else { 429 };
        assert_eq!(status, expected, "attempt {n} on {url}: {body}");
    }
    // … and a password changed through A is refused on B and C from the next request.
    for url in [&b, &c, &b, &c] {
        let (status, body) = call(
            &client,
            Method::GET,
            &format!("{url}/api/collections/users/records/{ann_id}"),
            Some(&ann),
            None,
        )
        .await;
        assert_eq!(
            status, 200,
            "ann's token works (and is cached) on {url}: {body}"
        );
    }
    let (status, body) = call(
        &client,
        Method::PATCH,
        &format!("{a}/api/collections/users/records/{ann_id}"),
        Some(&ann),
        Some(
            json!({"password": "ann-password-2", "passwordConfirm": "ann-password-2",
                    "oldPassword": "ann-password-1"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for url in [&b, &c] {
        let (status, _) = call(
            &client,
            Method::GET,
            &format!("{url}/api/collections/users/records/{ann_id}"),
            Some(&ann),
            None,
        )
        .await;
        assert_eq!(status, 401, "the old token on {url} right after the change");
    }
    assert!(
        stream.closed(SOON).await,
        "ann's stream on A ends with her old token"
    );

    // Events no queue is bound for are counted, not logged one WARN (with the whole
    // message) per write.
    for i in 0..3 {
        let returned: Vec<String> = cluster
            .problems(i)
            .into_iter()
            .filter(|l| l.contains("lapin::returned_messages"))
            .collect();
        assert!(returned.is_empty(), "instance {i}: {returned:#?}");
    }
}

/// Point 5: Redis stopped and started again (a server of the test's own). Both
/// instances keep serving; limits fall back to per instance with a warning;
/// `/api/ready` names Redis; realtime between the instances still flows through the
/// shared outbox, and setting subscriptions through the other instance comes back
/// with Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_per_instance_and_recovers() {
    let test = "scaleout::redis_outage_falls_back_per_instance_and_recovers";
    if !basalt_tests::postgres::available_or_skip(test).await || !require_tool("redis-server", test)
    {
        return;
    }
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let cluster = Instances::start(
        2,
        &[
            ("BASALT_REDIS_URL", format!("redis://127.0.0.1:{port}")),
            ("BASALT_RATE_LIMIT_AUTH", "2/1m".to_owned()),
        ],
    )
    .await;
    let client = basalt_tests::client();
    let [a, b] = [0, 1].map(|i| cluster.urls[i].clone());
    let admin = cluster.admin.clone();
    let ready = |url: String, up: bool| {
        let client = client.clone();
        async move {
            eventually(
                Duration::from_secs(15),
                "readiness to follow Redis",
                || async {
                    let (status, body) = call(
                        &client,
                        Method::GET,
                        &format!("{url}/api/ready"),
                        None,
                        None,
                    )
                    .await;
                    let redis_up = body["data"]["redis"]["code"] == "up";
                    (redis_up == up && (status == 200) == up).then_some(())
                },
            )
            .await;
        }
    };
    ready(a.clone(), true).await;
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{a}/api/collections"),
        Some(&admin),
        Some(
            json!({"name": "notes", "listRule": "", "viewRule": "", "createRule": "",
                    "fields": [{"name": "title", "type": "text"}]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut stream = Stream::open(&client, &a).await;
    let topics = vec!["notes".to_owned()];
    eventually(SOON, "subscriptions set through B", || async {
        (stream.subscribe(&client, &b, None, &topics).await == 204).then_some(())
    })
    .await;

    redis.signal("KILL");
    let _ = redis.child.wait();
    ready(a.clone(), false).await;
    ready(b.clone(), false).await;
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{b}/api/collections/notes/records"),
        None,
        Some(json!({"title": "while Redis is away"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, data) = stream.next(SOON).await.expect("the event reaches A anyway");
    assert_eq!(data["record"]["title"], "while Redis is away");
    // Limits per instance meanwhile: two attempts on each pass, the third on A not.
    let attempt = |url: String| {
        let client = client.clone();
        async move {
            call(
                &client,
                Method::POST,
                &format!("{url}/api/collections/_superusers/auth-with-password"),
                None,
                Some(json!({"identity": "nobody@example.com", "password": "wrong"})),
            )
            .await
            .0
        }
    };
    for url in [&a, &a, &b, &b] {
        assert_eq!(
            attempt(url.clone()).await,
            400,
            "per instance while Redis is down"
        );
    }
    assert_eq!(attempt(a.clone()).await, 429);
    for process in &cluster.processes {
        assert!(
            process.json_logs().iter().any(|l| l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Redis is unavailable"))),
            "a warning names the fallback"
        );
    }

    redis = OwnRedis::start(port);
    ready(a.clone(), true).await;
    ready(b.clone(), true).await;
    // Shared again: a schema change through B is served by A at once, and a new
    // stream on B takes its subscriptions through A.
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{b}/api/collections"),
        Some(&admin),
        Some(json!({"name": "later", "listRule": "", "fields": [{"name": "n", "type": "number"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(1),
        "the new collection on A",
        || async {
            let (status, _) = call(
                &client,
                Method::GET,
                &format!("{a}/api/collections/later/records"),
                None,
                None,
            )
            .await;
            (status == 200).then_some(())
        },
    )
    .await;
    let on_b = Stream::open(&client, &b).await;
    eventually(SOON, "subscriptions through A again", || async {
        (on_b.subscribe(&client, &a, None, &topics).await == 204).then_some(())
    })
    .await;
    drop(redis);
}

/// Point 6: Debian's nginx, round-robin over two instances with the compose
/// profile's configuration, and the PocketBase SDK through it: auth, CRUD, and
/// realtime with writes through each instance directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pocketbase_sdk_through_nginx_round_robin() {
    let test = "scaleout::pocketbase_sdk_through_nginx_round_robin";
    if !services(test, false).await || !require_tool("node", test) || !require_tool("npm", test) {
        return;
    }
    let Some(nginx) = Nginx::binary() else {
        basalt_tests::require_tool("nginx", test);
        return;
    };
    let cluster = Instances::start(
        2,
        &[("BASALT_REDIS_URL", "redis://127.0.0.1:6379".to_owned())],
    )
    .await;
    let proxy = Nginx::start(&nginx, &cluster.urls).await;
    let dir = super::sdk::install_sdk();
    let output = tokio::process::Command::new("node")
        .arg("scaleout.mjs")
        .current_dir(&dir)
        .env("BASALT_URL", &proxy.url)
        .env("INSTANCES", cluster.urls.join(","))
        .env("EMAIL", basalt_tests::instances::SUPERUSER.0)
        .env("PASSWORD", basalt_tests::instances::SUPERUSER.1)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK through nginx failed:\n{stdout}\n{stderr}\nnginx: {}",
        proxy.errors()
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{stdout}"
    );
    // Round-robin: the proxy's answers come from both instances.
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (status, body) = call(
            &basalt_tests::client(),
            Method::GET,
            &format!("{}/api/instances", proxy.url),
            Some(&cluster.admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        answered.insert(body["self"].as_str().unwrap().to_owned());
    }
    assert_eq!(answered.len(), 2, "{answered:?}");
}

/// Point 1: the Redis backend itself, between two caches of one installation (as two
/// instances hold them): values with a TTL, counters, scans and messages are shared;
/// another installation on the same Redis sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_shares_values_counters_and_messages() {
    use basalt_server::cache::Cache;
    let test = "scaleout::redis_cache_shares_values_counters_and_messages";
    if !require_service("Redis", "127.0.0.1:6379", test).await {
        return;
    }
    let url = url::Url::parse("redis://127.0.0.1:6379").unwrap();
    let installation = uuid::Uuid::now_v7().simple().to_string();
    let one = Cache::new(Some(&url), &installation, "one").unwrap();
    let two = Cache::new(Some(&url), &installation, "two").unwrap();
    let other = Cache::new(Some(&url), "another-installation", "three").unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(two.clone().run(stop.clone()));

    one.set("k", "v", Some(Duration::from_millis(300))).await;
    assert_eq!(two.get("k").await.as_deref(), Some("v"));
    assert_eq!(other.get("k").await, None, "installations are apart");
    one.set("scan:a", "1", None).await;
    two.set("scan:b", "2", None).await;
    assert_eq!(
        one.scan("scan:").await,
        vec![
            ("scan:a".to_owned(), "1".to_owned()),
            ("scan:b".to_owned(), "2".to_owned())
        ]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(two.get("k").await, None, "expired");

    let window = Duration::from_secs(5);
    assert_eq!(one.incr("n", window).await.0, 1);
    assert_eq!(two.incr("n", window).await.0, 2, "counted across instances");
    let (count, left) = one.incr("n", window).await;
    assert_eq!(count, 3);
    assert!(left <= window && left > Duration::from_secs(3), "{left:?}");
    assert_eq!(other.incr("n", window).await.0, 1);

    let mut heard = two.subscribe();
    // Until two's relay has subscribed, messages to it are lost (pub/sub).
    let deadline = Instant::now() + SOON;
    loop {
        one.publish("hello", None, json!({"n": 1})).await;
        let got = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await;
        if let Ok(Ok(m)) = got
            && m.kind == "hello"
            && m.from == "one"
        {
            break;
        }
        assert!(Instant::now() < deadline, "two never heard one");
    }
    one.publish("for-two", Some("two"), Value::Null).await;
    one.publish("for-someone-else", Some("nine"), Value::Null)
        .await;
    one.publish("last", None, Value::Null).await;
    let mut kinds = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(300), heard.recv()).await {
        kinds.push(m.kind);
    }
    kinds.retain(|k| k != "hello");
    assert_eq!(kinds, ["for-two", "last"]);
    for key in ["scan:a", "scan:b", "n"] {
        one.delete(key).await;
    }
    stop.cancel();
}
