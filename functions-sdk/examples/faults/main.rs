#![allow(clippy::panic, clippy::indexing_slicing)]
//! Faulty on purpose, for the server's tests: what it does is chosen by the request
//! path (HTTP) or the record's `title` (hooks and events). Not an example to copy.
//!
//! Events: each one is noted in the `seen` collection (event id, record id, type,
//! attempt); a title starting with `flaky` fails the first two attempts, `poison`
//! fails every one, and `fetch URL` gets URL (outbound HTTP) and notes its status and
//! body, or the error. Schedules note each tick in `ticks`; the function named
//! `slow-ticks` runs each for 2.5 s.

use basalt_functions::records::{self, Acting};
use basalt_functions::{Event, Function, Outcome, Request, Response, Tick, Write, json};

struct Faults;

/// Calls this instance has served (a fresh instance per call: never above 1).
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[allow(clippy::empty_loop)]
fn spin() -> ! {
    loop {}
}

fn memory_bomb() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        if blocks.len() > 100_000 {
            return blocks.len();
        }
    }
}

#[inline(never)]
fn deep(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 256]);
    if n == u64::MAX {
        return 0;
    }
    deep(n + 1) + pad[(n % 256) as usize]
}

fn fault(what: &str) -> Option<Response> {
    match what {
        "spin" => spin(),
        "memory" => Some(Response::json(200, &json!({"blocks": memory_bomb()}))),
        "trap" => panic!("a trap, on purpose"),
        "stack" => Some(Response::json(200, &json!({"depth": deep(0)}))),
        "big" => Some(Response {
            status: 200,
            headers: vec![],
            body: vec![b'x'; 4 << 20],
        }),
        "chatty" => {
            for i in 0..1_000_000 {
                basalt_functions::log::info(&format!("line {i}"));
            }
            Some(Response::text(200, "done"))
        }
        "sleepy" => {
            // Busy for a while (50 ms), then answers: a slow but healthy call.
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(50) {}
            Some(Response::text(200, "slept"))
        }
        _ => None,
    }
}

fn note(collection: &str, values: basalt_functions::Value) -> Result<(), String> {
    let values = match values {
        basalt_functions::Value::Object(map) => map,
        _ => return Err("not an object".into()),
    };
    records::create(Acting::Caller, collection, &values)
        .map(|_| ())
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

impl Function for Faults {
    fn on_event(event: Event) -> Result<(), String> {
        let record = event.record();
        let title = record
            .get("title")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        if title.starts_with("flaky") && event.attempt < 3 {
            return Err(format!("flaky on attempt {}", event.attempt));
        }
        if title == "poison" {
            return Err("poison, every time".into());
        }
        let fetched =
            title
                .strip_prefix("fetch ")
                .map(|url| match basalt_functions::fetch::get(url) {
                    Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    Err(e) => format!("error {e}"),
                });
        note(
            "seen",
            json!({
                "function": basalt_functions::context::function_name(),
                "title": title,
                "event": event.id,
                "record": event.record_id,
                "kind": event.kind,
                "attempt": event.attempt,
                "fetched": fetched,
            }),
        )
    }

    fn on_schedule(tick: Tick) -> Result<(), String> {
        if basalt_functions::context::function_name() == "slow-ticks" {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(2500) {}
        }
        note(
            "ticks",
            json!({
                "function": basalt_functions::context::function_name(),
                "schedule": tick.schedule,
                "due": tick.due,
                "late": tick.late,
            }),
        )
    }

    fn before_create(write: Write) -> Outcome {
        let title = write
            .values
            .get("title")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        if CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
            return Outcome::Reject {
                message: "this instance served a call before".into(),
                fields: vec![],
            };
        }
        match fault(&title) {
            Some(_) => Outcome::Unchanged,
            None if title == "bad-json" => {
                let mut values = write.values;
                values.insert("title".into(), json!(["not", "text"]));
                Outcome::Changed(values)
            }
            None => Outcome::Unchanged,
        }
    }

    fn http(request: Request) -> Response {
        let what = request.path.trim_start_matches('/');
        if what == "calls" {
            // How many calls this instance has served, this one included: always 1
            // when every call gets a fresh instance. Also the caller, so a test sees
            // an instance made ahead of its call still gets the call's own caller.
            let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            return Response::json(
                200,
                &json!({
                    "calls": calls,
                    "caller": format!("{:?}", basalt_functions::context::caller()),
                    "invocation": basalt_functions::context::invocation_id(),
                }),
            );
        }
        if what == "version" {
            // Busy for `ms` milliseconds, then answers the version that ran.
            let ms = request
                .param("ms")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(ms) {}
            let version = basalt_functions::context::function_version();
            return Response::json(200, &json!({"version": version}));
        }
        if what == "echo" {
            let mut response = Response::json(
                201,
                &json!({
                    "method": request.method,
                    "query": request.query,
                    "x-test": request.header("x-test"),
                    "authorization": request.header("authorization"),
                    "body": String::from_utf8_lossy(&request.body),
                    "caller": format!("{:?}", basalt_functions::context::caller()),
                }),
            );
            response
                .headers
                .push(("x-function".into(), "faults".into()));
            return response;
        }
        fault(what)
            .unwrap_or_else(|| Response::json(200, &json!({"ok": true, "path": request.path})))
    }
}

basalt_functions::export!(Faults);
