//! The SDK for Basalt functions: the WIT world in `wit/` and a thin layer over
//! wit-bindgen so that a before-write hook or an HTTP handler is a plain Rust fn.
//!
//! ```ignore
//! use basalt_functions::{Function, Outcome, Write};
//!
//! struct Slug;
//!
//! impl Function for Slug {
//!     fn before_create(mut write: Write) -> Outcome {
//!         let title = write.values["title"].as_str().unwrap_or_default().to_lowercase();
//!         write.values.insert("slug".into(), title.replace(' ', "-").into());
//!         Outcome::Changed(write.values)
//!     }
//! }
//!
//! basalt_functions::export!(Slug);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`: the `.wasm` file is a
//! component for the `all` world (hooks, an HTTP handler, after-event and schedule
//! triggers; what a type does not implement answers "unchanged", 404 or done), ready
//! for `basalt functions deploy`.

// The generated bindings lift and lower values across the component boundary.
#![allow(unsafe_code)]

use std::marker::PhantomData;

pub use serde_json::{self, Map, Value, json};

/// The generated bindings of `basalt:functions/all` (and the WASI interfaces it
/// uses), for what the plain-fn layer does not cover.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "all",
        path: "wit",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "basalt_functions::bindings",
    });
}

use bindings::exports::basalt::functions::hooks as guest_hooks;
use bindings::exports::basalt::functions::triggers as guest_triggers;
use bindings::wasi::http::types as http;

/// A write about to happen, as a before-hook sees it.
#[derive(Clone, Debug)]
pub struct Write {
    pub collection: String,
    /// The record's id (a create's, already chosen).
    pub id: String,
    /// The values to be written, validated (a delete: the record as stored).
    pub values: Map<String, Value>,
    /// An update's record as stored before it.
    pub existing: Option<Map<String, Value>>,
}

/// One field's problem in a rejection.
#[derive(Clone, Debug)]
pub struct FieldError {
    pub field: String,
    /// A stable code, e.g. `validation_invalid_value`.
    pub code: String,
    pub message: String,
}

/// What a before-hook decides.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Write the values as they are.
    Unchanged,
    /// Write these values instead (validated again by Basalt).
    Changed(Map<String, Value>),
    /// Refuse the write: a 400 with this message and these field errors.
    Reject {
        message: String,
        fields: Vec<FieldError>,
    },
}

impl Outcome {
    /// Refuse with a message.
    pub fn reject(message: impl Into<String>) -> Outcome {
        Outcome::Reject {
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Refuse with a message and one field's error.
    pub fn reject_field(
        message: impl Into<String>,
        field: impl Into<String>,
        code: impl Into<String>,
        field_message: impl Into<String>,
    ) -> Outcome {
        Outcome::Reject {
            message: message.into(),
            fields: vec![FieldError {
                field: field.into(),
                code: code.into(),
                message: field_message.into(),
            }],
        }
    }
}

/// An HTTP request to `/api/functions/{name}/{path}`.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path after the function's name, starting with `/`.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`, as sent (not percent-decoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The body as JSON.
    ///
    /// Fails when the body is not JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// An HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A committed record change, as an after-event trigger gets it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The CloudEvent id: the same on every delivery (deduplicate on it).
    pub id: String,
    /// `basalt.record.created`, `…updated` or `…deleted`.
    pub kind: String,
    pub collection: String,
    /// The record's id.
    pub record_id: String,
    /// The whole CloudEvent.
    pub cloud_event: Value,
    /// 1 on the first delivery, 2 on the first retry, …
    pub attempt: u32,
}

impl Event {
    /// The record as committed (for a delete, as it was).
    pub fn record(&self) -> Map<String, Value> {
        match self.cloud_event.pointer("/data/record") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }

    /// An update's record before it.
    pub fn previous(&self) -> Option<Map<String, Value>> {
        match self.cloud_event.pointer("/data/previous") {
            Some(Value::Object(map)) => Some(map.clone()),
            _ => None,
        }
    }
}

/// One tick of a schedule.
#[derive(Clone, Debug)]
pub struct Tick {
    /// The schedule as declared.
    pub schedule: String,
    /// When it was due, RFC 3339 in UTC.
    pub due: String,
    /// A tick missed while no server ran, run late at start-up.
    pub late: bool,
}

/// A Basalt function: implement what it does, leave the rest to the defaults.
pub trait Function {
    /// Before a record is created.
    fn before_create(_write: Write) -> Outcome {
        Outcome::Unchanged
    }
    /// Before a record is updated.
    fn before_update(_write: Write) -> Outcome {
        Outcome::Unchanged
    }
    /// Before a record is deleted (a changed outcome is ignored).
    fn before_delete(_write: Write) -> Outcome {
        Outcome::Unchanged
    }
    /// An HTTP request to the function's route.
    fn http(_request: Request) -> Response {
        Response::text(404, "Not found")
    }
    /// A committed change a trigger matched; an error has it retried with back-off.
    ///
    /// Fails with a message for the invocation log.
    fn on_event(_event: Event) -> Result<(), String> {
        Ok(())
    }
    /// A schedule's tick.
    ///
    /// Fails with a message for the invocation log.
    fn on_schedule(_tick: Tick) -> Result<(), String> {
        Ok(())
    }
}

/// Export `T`'s hooks and handler as the component's (on wasm32 only: a host build
/// of the same crate, as `cargo build --workspace` makes, exports nothing).
#[macro_export]
macro_rules! export {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __BasaltFunction = $crate::Adapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_world!(__BasaltFunction with_types_in $crate::bindings);
        /// The function's entry points, so a host build checks (and uses) them.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __basalt_function_entry_points() -> [usize; 6] {
            [
                <$t as $crate::Function>::before_create as usize,
                <$t as $crate::Function>::before_update as usize,
                <$t as $crate::Function>::before_delete as usize,
                <$t as $crate::Function>::http as usize,
                <$t as $crate::Function>::on_event as usize,
                <$t as $crate::Function>::on_schedule as usize,
            ]
        }
    };
}

/// Adapts a [`Function`] to the generated export traits (used by [`export!`]).
#[doc(hidden)]
pub struct Adapter<T>(PhantomData<T>);

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn write_of(w: guest_hooks::Write) -> Write {
    Write {
        collection: w.collection,
        id: w.id,
        values: object(&w.values),
        existing: w.existing.as_deref().map(object),
    }
}

fn outcome_of(o: Outcome) -> guest_hooks::Outcome {
    match o {
        Outcome::Unchanged => guest_hooks::Outcome::Unchanged,
        Outcome::Changed(values) => {
            guest_hooks::Outcome::Changed(Value::Object(values).to_string())
        }
        Outcome::Reject { message, fields } => {
            guest_hooks::Outcome::Reject(bindings::basalt::functions::types::Rejection {
                message,
                fields: fields
                    .into_iter()
                    .map(|f| bindings::basalt::functions::types::FieldError {
                        field: f.field,
                        code: f.code,
                        message: f.message,
                    })
                    .collect(),
            })
        }
    }
}

impl<T: Function> guest_hooks::Guest for Adapter<T> {
    fn before_create(write: guest_hooks::Write) -> guest_hooks::Outcome {
        outcome_of(T::before_create(write_of(write)))
    }
    fn before_update(write: guest_hooks::Write) -> guest_hooks::Outcome {
        outcome_of(T::before_update(write_of(write)))
    }
    fn before_delete(write: guest_hooks::Write) -> guest_hooks::Outcome {
        outcome_of(T::before_delete(write_of(write)))
    }
}

impl<T: Function> guest_triggers::Guest for Adapter<T> {
    fn on_event(event: guest_triggers::Event) -> Result<(), String> {
        T::on_event(Event {
            cloud_event: serde_json::from_str(&event.cloud_event).unwrap_or(Value::Null),
            id: event.id,
            kind: event.type_,
            collection: event.collection,
            record_id: event.subject,
            attempt: event.attempt,
        })
    }
    fn on_schedule(tick: guest_triggers::Tick) -> Result<(), String> {
        T::on_schedule(Tick {
            schedule: tick.schedule,
            due: tick.due,
            late: tick.late,
        })
    }
}

fn method_name(method: http::Method) -> String {
    match method {
        http::Method::Get => "GET".into(),
        http::Method::Head => "HEAD".into(),
        http::Method::Post => "POST".into(),
        http::Method::Put => "PUT".into(),
        http::Method::Delete => "DELETE".into(),
        http::Method::Connect => "CONNECT".into(),
        http::Method::Options => "OPTIONS".into(),
        http::Method::Trace => "TRACE".into(),
        http::Method::Patch => "PATCH".into(),
        http::Method::Other(other) => other,
    }
}

fn read_request(request: &http::IncomingRequest) -> Request {
    let target = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume() {
        if let Ok(stream) = incoming.stream() {
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                body.extend_from_slice(&chunk);
            }
        }
        let _ = http::IncomingBody::finish(incoming);
    }
    Request {
        method: method_name(request.method()),
        path,
        query,
        headers,
        body,
    }
}

fn send(response: Response, out: http::ResponseOutparam) {
    let fields: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    let headers = http::Fields::from_list(&fields).unwrap_or_else(|_| http::Fields::new());
    let outgoing = http::OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    http::ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = http::OutgoingBody::finish(body, None);
}

impl<T: Function> bindings::exports::wasi::http::incoming_handler::Guest for Adapter<T> {
    fn handle(request: http::IncomingRequest, response_out: http::ResponseOutparam) {
        let request = read_request(&request);
        send(T::http(request), response_out);
    }
}

/// Structured logging into the call's invocation log.
pub mod log {
    use super::bindings::basalt::functions::log as host;

    fn write(level: host::Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        host::write(level, message, &fields);
    }

    pub fn debug(message: &str) {
        write(host::Level::Debug, message, &[]);
    }
    pub fn info(message: &str) {
        write(host::Level::Info, message, &[]);
    }
    pub fn warn(message: &str) {
        write(host::Level::Warn, message, &[]);
    }
    pub fn error(message: &str) {
        write(host::Level::Error, message, &[]);
    }
    /// A line with key-value fields.
    pub fn info_with(message: &str, fields: &[(&str, &str)]) {
        write(host::Level::Info, message, fields);
    }
}

/// The current call.
pub mod context {
    use super::bindings::basalt::functions::context as host;
    pub use super::bindings::basalt::functions::types::{Identity, UserRef};

    /// Who made the call.
    pub fn caller() -> Identity {
        host::caller()
    }
    pub fn function_name() -> String {
        host::function_name()
    }
    pub fn function_version() -> u32 {
        host::function_version()
    }
    pub fn invocation_id() -> String {
        host::invocation_id()
    }
}

/// Records, through the same rules as the REST API.
pub mod records {
    use super::bindings::basalt::functions::records as host;
    pub use super::bindings::basalt::functions::records::{Acting, ListQuery};
    pub use super::bindings::basalt::functions::types::Error;
    use super::{Map, Value};

    /// One page of records.
    #[derive(Clone, Debug)]
    pub struct Page {
        pub items: Vec<Value>,
        pub page: u32,
        pub per_page: u32,
        pub total_items: i64,
        pub total_pages: i64,
    }

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    /// A page of `collection`'s records.
    ///
    /// Fails as the REST API would (bad filter, rules, scopes).
    pub fn list(acting: Acting, collection: &str, query: &ListQuery) -> Result<Page, Error> {
        let page = host::list(acting, collection, query)?;
        Ok(Page {
            items: page.items.iter().map(|t| value(t)).collect(),
            page: page.page,
            per_page: page.per_page,
            total_items: page.total_items,
            total_pages: page.total_pages,
        })
    }

    /// One record.
    ///
    /// Fails with 404 when there is none the identity may see.
    pub fn get(acting: Acting, collection: &str, id: &str) -> Result<Value, Error> {
        host::get(acting, collection, id).map(|t| value(&t))
    }

    /// Create a record; the stored record back.
    ///
    /// Fails as the REST API would.
    pub fn create(
        acting: Acting,
        collection: &str,
        values: &Map<String, Value>,
    ) -> Result<Value, Error> {
        host::create(
            acting,
            collection,
            &Value::Object(values.clone()).to_string(),
        )
        .map(|t| value(&t))
    }

    /// Update a record; the stored record back.
    ///
    /// Fails as the REST API would.
    pub fn update(
        acting: Acting,
        collection: &str,
        id: &str,
        values: &Map<String, Value>,
    ) -> Result<Value, Error> {
        host::update(
            acting,
            collection,
            id,
            &Value::Object(values.clone()).to_string(),
        )
        .map(|t| value(&t))
    }

    /// Delete a record.
    ///
    /// Fails as the REST API would.
    pub fn delete(acting: Acting, collection: &str, id: &str) -> Result<(), Error> {
        host::delete(acting, collection, id)
    }
}

/// Outbound HTTP (`wasi:http/outgoing-handler`): only to destinations the function's
/// manifest lists under `outbound`; anything else fails with an error naming why.
pub mod fetch {
    use super::bindings::wasi::http::outgoing_handler;
    use super::bindings::wasi::http::types as http;

    /// A response: status, headers (lower-case names) and body.
    #[derive(Clone, Debug)]
    pub struct Fetched {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    /// Send `method` to `url` (`http(s)://host[:port]/path?query`) with `body`.
    ///
    /// Fails with a message: a malformed URL, a destination not allowed, or the
    /// connection's or response's failure.
    pub fn send(method: &str, url: &str, body: &[u8]) -> Result<Fetched, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let request = http::OutgoingRequest::new(http::Fields::new());
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => http::Method::Get,
            "POST" => http::Method::Post,
            "PUT" => http::Method::Put,
            "PATCH" => http::Method::Patch,
            "DELETE" => http::Method::Delete,
            "HEAD" => http::Method::Head,
            other => http::Method::Other(other.to_owned()),
        };
        let scheme = match scheme {
            "http" => http::Scheme::Http,
            "https" => http::Scheme::Https,
            other => http::Scheme::Other(other.to_owned()),
        };
        request
            .set_method(&method)
            .map_err(|()| "the method is not valid".to_owned())?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| "the scheme is not valid".to_owned())?;
        request
            .set_authority(Some(authority))
            .map_err(|()| format!("`{authority}` is not a valid host"))?;
        request
            .set_path_with_query(Some(path))
            .map_err(|()| format!("`{path}` is not a valid path"))?;
        let outgoing = request
            .body()
            .map_err(|()| "the request body is gone".to_owned())?;
        {
            let stream = outgoing
                .write()
                .map_err(|()| "the request body cannot be written".to_owned())?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| format!("writing the request body: {e:?}"))?;
            }
        }
        http::OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
        let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
        future.subscribe().block();
        let response = future
            .get()
            .ok_or("no response")?
            .map_err(|()| "the response was taken already".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let status = response.status();
        let mut body = Vec::new();
        let incoming = response
            .consume()
            .map_err(|()| "the response body is gone".to_owned())?;
        {
            let stream = incoming
                .stream()
                .map_err(|()| "the response body cannot be read".to_owned())?;
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                body.extend_from_slice(&chunk);
            }
        }
        let _ = http::IncomingBody::finish(incoming);
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }

    /// `GET url`.
    ///
    /// Fails as [`send`].
    pub fn get(url: &str) -> Result<Fetched, String> {
        send("GET", url, &[])
    }
}
