//! The HTTP skeleton: request ids, the error body for errors made outside handlers,
//! the body limit, health, readiness and metrics.

use std::time::Duration;

use basalt_tests::{Backend, TestApp, backend_tests, json, require_service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

backend_tests!(
    health_answers_like_pocketbase,
    request_id_is_echoed_or_generated,
    unknown_route_is_404_with_error_body,
    wrong_method_is_405_with_error_body,
    oversized_body_is_413_before_it_is_read,
    ready_checks_the_database,
    ready_checks_redis_and_rabbitmq_when_configured,
    ready_names_the_services_that_are_down,
    metrics_count_requests_by_route_and_status,
);

fn assert_error_body(body: &serde_json::Value, status: u16) {
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["data"].is_object(), "{body}");
}

async fn health_answers_like_pocketbase(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"code": 200, "message": "API is healthy.", "data": {}})
    );
    let head = app
        .client
        .head(app.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
}

async fn request_id_is_echoed_or_generated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .get(app.url("/api/health"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-chosen-42");

    let a = app.get("/api/health").await;
    let b = app.get("/api/health").await;
    let id_a = a.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id_b = b.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id_a).is_ok(),
        "generated ids are UUIDs: {id_a}"
    );
    assert_ne!(id_a, id_b);

    // An id a log could be poisoned with is replaced, not echoed.
    let res = app
        .client
        .get(app.url("/api/nope"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
}

async fn unknown_route_is_404_with_error_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/api/nope", "/", "/api/collections/x/records/../../../etc"] {
        let res = app.get(path).await;
        assert_eq!(res.headers()["content-type"], "application/json", "{path}");
        let (status, body) = json(res).await;
        assert_eq!(status, 404, "{path}");
        assert_error_body(&body, 404);
    }
}

async fn wrong_method_is_405_with_error_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .delete(app.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let (status, body) = json(res).await;
    assert_eq!(status, 405);
    assert_error_body(&body, 405);
}

/// Send only the headers and the first bytes of a body far over the limit: the
/// answer must come without the server waiting for the rest.
async fn oversized_body_is_413_before_it_is_read(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("body_limit", "2KiB")
        .spawn()
        .await;
    for path in ["/api/health", "/api/anything"] {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000000\r\n\r\n{{\"a\":\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let body: serde_json::Value =
            serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_error_body(&body, 413);
        assert!(
            body["message"].as_str().unwrap().contains("2048 bytes"),
            "{body}"
        );
    }
    // Under the limit is fine.
    let res = app
        .client
        .post(app.url("/api/anything"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

async fn ready_checks_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["database"]["code"], "up");
    assert!(
        body["data"].get("redis").is_none(),
        "not configured, not checked"
    );
    assert!(
        body["data"].get("rabbitmq").is_none(),
        "not configured, not checked"
    );

    // With the pool closed, the same check must fail and say what is down.
    app.state.db.clone().close().await.unwrap();
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["database"]["code"], "down");
    assert!(
        body["message"].as_str().unwrap().contains("database"),
        "{body}"
    );
}

const REDIS: &str = "127.0.0.1:6379";
const RABBITMQ: &str = "127.0.0.1:5672";

async fn ready_checks_redis_and_rabbitmq_when_configured(backend: Backend) {
    let test = "ready_checks_redis_and_rabbitmq_when_configured";
    if !require_service("Redis", REDIS, test).await
        || !require_service("RabbitMQ", RABBITMQ, test).await
    {
        return;
    }
    let app = TestApp::builder(backend)
        .setting("redis_url", format!("redis://{REDIS}"))
        .setting("amqp_url", format!("amqp://guest:guest@{RABBITMQ}/%2f"))
        .spawn()
        .await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200, "{body}");
    for service in ["database", "redis", "rabbitmq"] {
        assert_eq!(body["data"][service]["code"], "up", "{service}: {body}");
    }
}

/// A port with nothing listening: bind one, note it, let it go.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn ready_names_the_services_that_are_down(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("redis_url", format!("redis://127.0.0.1:{}", closed_port()))
        .setting(
            "amqp_url",
            format!("amqp://127.0.0.1:{}/%2f", closed_port()),
        )
        .spawn()
        .await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, 503);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("redis") && message.contains("rabbitmq"),
        "{message}"
    );
    assert!(!message.contains("database"), "{message}");
    assert_eq!(body["data"]["database"]["code"], "up");
    assert_eq!(body["data"]["redis"]["code"], "down");
    assert_eq!(body["data"]["rabbitmq"]["code"], "down");
    // The server itself keeps serving.
    assert_eq!(app.get("/api/health").await.status(), 200);
}

async fn metrics_count_requests_by_route_and_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get("/api/health").await;
    app.get("/api/health").await;
    app.get("/api/does/not/exist").await;
    app.client
        .post(app.url("/api/health"))
        .send()
        .await
        .unwrap();

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = res.text().await.unwrap();
    let value = |series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let health = r#"{method="GET",route="/api/health",status="200"}"#;
    assert_eq!(
        value(&format!("basalt_http_requests_total{health}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&format!(
            "basalt_http_request_duration_seconds_count{health}"
        )),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(r#"basalt_http_requests_total{method="GET",route="<unmatched>",status="404"}"#),
        Some(1.0),
        "unknown paths share one series: {text}"
    );
    assert_eq!(
        value(r#"basalt_http_requests_total{method="POST",route="/api/health",status="405"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("does/not/exist"),
        "raw paths never become labels"
    );
    assert!(
        text.contains("basalt_http_request_duration_seconds_bucket{"),
        "{text}"
    );
}
