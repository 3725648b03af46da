//! GraphQL over the collections: a schema built with async-graphql's dynamic API
//! from each schema snapshot, swapped atomically when the snapshot changes (an
//! operation keeps the schema it started with). Resolvers call `records` — the same
//! rules, hidden fields, API-key scopes and errors as REST — and nested relations
//! are loaded in batches ([`loader`]). Limits on length, depth, aliases, root fields
//! and cost are checked before an operation runs ([`limits`]).

pub mod batch;
mod build;
pub mod limits;
mod loader;
pub mod lower;
pub mod names;
pub mod subscribe;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Error, ErrorExtensions, Response};
use futures_util::stream::{BoxStream, StreamExt};

use crate::errors::{Code, Problem};
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::records::read::request_auth;
use crate::records::{RecordError, RecordService};
use crate::schema::{SchemaService, Snapshot};
pub use build::Built;
pub use limits::Limits;

/// A domain error as a GraphQL error: the message, `extensions.code` from the shared
/// table and, for invalid input, `extensions.fields` (path → code and message).
pub fn problem_error(problem: Problem) -> Error {
    let fields: serde_json::Map<String, serde_json::Value> = problem
        .fields
        .into_map()
        .into_iter()
        .map(|(path, e)| {
            (
                path,
                serde_json::json!({"code": e.code, "message": e.message}),
            )
        })
        .collect();
    let code = problem.code;
    Error::new(problem.message).extend_with(move |_, e| {
        e.set("code", code.name());
        if !fields.is_empty()
            && let Ok(value) =
                async_graphql::Value::from_json(serde_json::Value::Object(fields.clone()))
        {
            e.set("fields", value);
        }
    })
}

/// A record error as a GraphQL error.
pub fn error(err: RecordError) -> Error {
    problem_error(err.problem())
}

/// What a WebSocket connection gives its subscriptions.
#[derive(Clone)]
pub struct Session {
    pub events: crate::events::Events,
    pub subscriptions: Arc<AtomicUsize>,
    pub max_subscriptions: usize,
}

/// One operation's data: who asks, with what request context, and its batches.
pub struct Ctx {
    pub records: RecordService,
    pub identity: Identity,
    pub snapshot: Arc<Snapshot>,
    base: Request,
    pub loader: loader::Loader,
    pub batch_max: usize,
    pub session: Option<Session>,
}

impl Ctx {
    /// The filter language's view of this operation, as `method` (queries read as
    /// `GET`, creates as `POST`, …, so rules naming `@request.method` agree with REST).
    pub fn request(&self, method: &str) -> std::borrow::Cow<'_, Request> {
        if self.base.method == method {
            return std::borrow::Cow::Borrowed(&self.base);
        }
        let mut request = self.base.clone();
        method.clone_into(&mut request.method);
        std::borrow::Cow::Owned(request)
    }
}

/// The schemas of one snapshot: everyone's, and superusers' (hidden fields too).
struct Cached {
    snapshot: Arc<Snapshot>,
    public: Result<Built, String>,
    superuser: OnceLock<Result<Built, String>>,
}

/// Builds, caches and runs the GraphQL schema.
pub struct GraphqlService {
    records: RecordService,
    schema: Arc<SchemaService>,
    limits: Limits,
    cached: arc_swap::ArcSwapOption<Cached>,
    building: Mutex<()>,
    /// Open WebSocket connections per client address.
    connections: Mutex<HashMap<std::net::IpAddr, usize>>,
    parsed: ParsedCache,
}

/// Operation texts already parsed, so a client repeating its queries (as apps do)
/// skips the parser. Bounded; emptied when full.
#[derive(Default)]
struct ParsedCache(Mutex<HashMap<String, Arc<ExecutableDocument>>>);

/// Texts kept parsed at most.
const PARSED_CACHE: usize = 512;

impl ParsedCache {
    fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.0.lock().ok()?.get(query).cloned()
    }

    fn put(&self, query: &str, document: ExecutableDocument) -> Arc<ExecutableDocument> {
        let document = Arc::new(document);
        // Long texts are rare and would make the cache big: not kept.
        if query.len() > 4096 {
            return document;
        }
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= PARSED_CACHE {
                cache.clear();
            }
            cache.insert(query.to_owned(), Arc::clone(&document));
        }
        document
    }
}

/// Operations (name and text) that passed a schema's strict validation: run again
/// with no variables or only string ones, they pass again, so they run on the
/// schema's `trusted` twin and skip it (async-graphql keeps no validated document,
/// and validation was a tenth of a simple query's CPU). Bounded; emptied when full.
#[derive(Default)]
pub struct Validated(Mutex<HashMap<String, Vec<Option<String>>>>);

impl Validated {
    fn contains(&self, request: &async_graphql::Request) -> bool {
        self.0.lock().is_ok_and(|texts| {
            texts
                .get(&request.query)
                .is_some_and(|names| names.contains(&request.operation_name))
        })
    }

    fn insert(&self, operation_name: Option<String>, query: String) {
        if query.len() > 4096 {
            return;
        }
        if let Ok(mut texts) = self.0.lock() {
            if texts.len() >= PARSED_CACHE {
                texts.clear();
            }
            let names = texts.entry(query).or_default();
            if !names.contains(&operation_name) {
                names.push(operation_name);
            }
        }
    }
}

/// Whether the outcome of validating `document` cannot depend on `variables`: every
/// variable the operation declares is an `ID` or a `String` (not a list) and is given
/// a string, or is nullable (or defaulted) and given nothing or null. Other variables
/// (numbers, enums, inputs, lists) are checked by value, so those operations are
/// always validated in full.
fn plain_variables(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &async_graphql::Variables,
) -> bool {
    use async_graphql::parser::types::{BaseType, DocumentOperations};
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return false,
        },
        (DocumentOperations::Multiple(_), None) => return false,
    };
    operation.node.variable_definitions.iter().all(|def| {
        let def = &def.node;
        let ty = &def.var_type.node;
        let BaseType::Named(name) = &ty.base else {
            return false;
        };
        if name.as_str() != "ID" && name.as_str() != "String" {
            return false;
        }
        match variables.get(&def.name.node) {
            Some(async_graphql::Value::String(_)) => true,
            Some(async_graphql::Value::Null) | None => ty.nullable || def.default_value.is_some(),
            Some(_) => false,
        }
    })
}

/// One open WebSocket connection, counted against its address until dropped.
pub struct Connection {
    service: Arc<GraphqlService>,
    ip: std::net::IpAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(mut open) = self.service.connections.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl std::fmt::Debug for GraphqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Who asks and how, as an adapter knows it.
pub struct Caller {
    pub identity: Identity,
    /// Request headers, lower-case names (`@request.headers.*`).
    pub headers: HashMap<String, String>,
    pub batch_max: usize,
    pub session: Option<Session>,
}

fn refused(problem: Problem) -> Response {
    Response::from_errors(vec![
        problem_error(problem).into_server_error(async_graphql::Pos::default()),
    ])
}

impl GraphqlService {
    pub fn new(records: RecordService, schema: Arc<SchemaService>, limits: Limits) -> Self {
        GraphqlService {
            records,
            schema,
            limits,
            cached: arc_swap::ArcSwapOption::empty(),
            building: Mutex::new(()),
            connections: Mutex::new(HashMap::new()),
            parsed: ParsedCache::default(),
        }
    }

    /// Count a new WebSocket connection from `ip`; `None` when it has `max` open.
    pub fn connect(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<Connection> {
        let mut open = self.connections.lock().ok()?;
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Connection {
            service: Arc::clone(self),
            ip,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The schema of the current snapshot, for superusers or for everyone else:
    /// built once per snapshot.
    ///
    /// Fails when the schema cannot be built (logged; a bug).
    pub fn current(&self, superuser: bool) -> Result<Built, Problem> {
        let snapshot = self.schema.snapshot();
        let cached = match self.cached.load_full() {
            Some(c) if c.snapshot.version() == snapshot.version() => c,
            _ => {
                let _building = self.building.lock();
                match self.cached.load_full() {
                    Some(c) if c.snapshot.version() == snapshot.version() => c,
                    _ => {
                        let public = build::build(Arc::clone(&snapshot), false, &self.limits);
                        let fresh = Arc::new(Cached {
                            snapshot,
                            public,
                            superuser: OnceLock::new(),
                        });
                        self.cached.store(Some(Arc::clone(&fresh)));
                        fresh
                    }
                }
            }
        };
        let built = if superuser {
            cached
                .superuser
                .get_or_init(|| build::build(Arc::clone(&cached.snapshot), true, &self.limits))
        } else {
            &cached.public
        };
        built.clone().map_err(|message| {
            tracing::error!(%message, "the GraphQL schema cannot be built");
            Problem::new(Code::Internal, "The GraphQL schema cannot be built.")
        })
    }

    /// The schema's SDL, as everyone but superusers sees it.
    ///
    /// Fails like [`GraphqlService::current`].
    pub fn sdl(&self) -> Result<String, Problem> {
        Ok(self.current(false)?.schema.sdl())
    }

    fn context(&self, caller: Caller, snapshot: Arc<Snapshot>) -> Ctx {
        let mut base = Request::new("GET");
        base.auth = request_auth(&caller.identity);
        base.headers = caller.headers;
        base.context = "graphql".to_owned();
        Ctx {
            records: self.records.clone(),
            loader: loader::Loader::default(),
            identity: caller.identity,
            snapshot,
            base,
            batch_max: caller.batch_max,
            session: caller.session,
        }
    }

    /// Check `request` against the limits and attach the operation's data.
    fn prepare(
        &self,
        caller: Caller,
        request: async_graphql::Request,
    ) -> Result<Prepared, Box<Response>> {
        let built = self
            .current(caller.identity.is_superuser())
            .map_err(|p| Box::new(refused(p)))?;
        let too_complex = |message| Box::new(refused(Problem::new(Code::QueryTooComplex, message)));
        limits::check_length(request.query.len(), &self.limits).map_err(too_complex)?;
        let mut request = request;
        // Parsed once (or found parsed: clients send the same texts again and again)
        // and kept in the request, which the executor then reuses.
        let document = match self.parsed.get(&request.query) {
            Some(document) => Some(document),
            None => async_graphql::parser::parse_query(&request.query)
                .ok()
                .map(|document| self.parsed.put(&request.query, document)),
        };
        if let Some(document) = &document {
            limits::check_document(document, &request.variables, &self.limits, &built.lists)
                .map_err(too_complex)?;
            request.set_parsed_query((**document).clone());
        }
        let validated = built.validated.contains(&request);
        let trusted = document.as_ref().is_some_and(|document| {
            validated
                && plain_variables(
                    document,
                    request.operation_name.as_deref(),
                    &request.variables,
                )
        });
        let remember = (document.is_some() && !validated)
            .then(|| (request.operation_name.clone(), request.query.clone()));
        let ctx = self.context(caller, Arc::clone(&built.snapshot));
        Ok(Prepared {
            built,
            request: request.data(ctx),
            document,
            trusted,
            remember,
        })
    }

    /// Run one query or mutation.
    pub async fn execute(&self, caller: Caller, request: async_graphql::Request) -> Response {
        match self.prepare(caller, request) {
            Ok(prepared) => {
                let schema = if prepared.trusted {
                    &prepared.built.trusted
                } else {
                    &prepared.built.schema
                };
                let mut response = schema.execute(prepared.request).await;
                // Data (even null fields) means the operation passed validation and
                // ran; a validation error leaves none.
                if let Some((name, query)) = prepared.remember
                    && !matches!(response.data, async_graphql::Value::Null)
                {
                    prepared.built.validated.insert(name, query);
                }
                if let Some(document) = prepared.document {
                    root_paths(&mut response, &document);
                }
                response
            }
            Err(response) => *response,
        }
    }

    /// Run an operation that may be a subscription: its responses as a stream.
    pub fn execute_stream(
        &self,
        caller: Caller,
        request: async_graphql::Request,
    ) -> BoxStream<'static, Response> {
        match self.prepare(caller, request) {
            Ok(prepared) => prepared
                .built
                .schema
                .execute_stream(prepared.request)
                .boxed(),
            Err(response) => futures_util::stream::once(async move { *response }).boxed(),
        }
    }
}

/// An operation ready to run.
struct Prepared {
    built: Built,
    request: async_graphql::Request,
    document: Option<Arc<ExecutableDocument>>,
    /// Run on the schema's `trusted` twin (see [`Validated`]).
    trusted: bool,
    /// Remember the operation as validated if it runs.
    remember: Option<(Option<String>, String)>,
}

/// The `path` of errors raised by root fields' resolvers, which async-graphql's
/// dynamic schema leaves out (the spec asks for it): the field's response key, found
/// by the error's location.
fn root_paths(response: &mut Response, document: &ExecutableDocument) {
    use async_graphql::parser::types::Selection;
    for error in response.errors.iter_mut().filter(|e| e.path.is_empty()) {
        let [location] = error.locations.as_slice() else {
            continue;
        };
        let key = document.operations.iter().find_map(|(_, op)| {
            op.node
                .selection_set
                .node
                .items
                .iter()
                .find_map(|item| match &item.node {
                    Selection::Field(field) if field.pos == *location => {
                        Some(field.node.response_key().node.to_string())
                    }
                    _ => None,
                })
        });
        if let Some(key) = key {
            error.path = vec![async_graphql::PathSegment::Field(key)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(query: &str, operation: Option<&str>, variables: serde_json::Value) -> bool {
        let document = async_graphql::parser::parse_query(query).unwrap();
        plain_variables(
            &document,
            operation,
            &async_graphql::Variables::from_json(variables),
        )
    }

    #[test]
    fn only_string_variables_let_a_validated_text_skip_validation() {
        let q = "query($id: ID!) { post(id: $id) { id } }";
        assert!(plain(q, None, serde_json::json!({"id": "a"})));
        assert!(!plain(q, None, serde_json::json!({})));
        assert!(!plain(q, None, serde_json::json!({"id": null})));
        assert!(!plain(q, None, serde_json::json!({"id": 5})));
        assert!(plain(
            "{ posts { totalItems } }",
            None,
            serde_json::json!({})
        ));
        let nullable = "query($s: String, $t: String! = \"x\") { a(s: $s, t: $t) }";
        assert!(plain(nullable, None, serde_json::json!({})));
        assert!(plain(
            nullable,
            None,
            serde_json::json!({"s": null, "t": "y"})
        ));
        assert!(!plain(nullable, None, serde_json::json!({"s": ["x"]})));
        for other in ["Int", "Boolean", "DateTime", "PostsWhere", "[ID!]"] {
            let q = format!("query($v: {other}) {{ a(v: $v) }}");
            assert!(!plain(&q, None, serde_json::json!({"v": "1"})), "{other}");
        }
        let two = "query A($id: ID!) { a(id: $id) } query B { b }";
        assert!(plain(two, Some("A"), serde_json::json!({"id": "x"})));
        assert!(plain(two, Some("B"), serde_json::json!({})));
        assert!(!plain(two, Some("C"), serde_json::json!({})));
        assert!(!plain(two, None, serde_json::json!({})));
    }

    #[test]
    fn validated_operations_are_kept_per_name_and_bounded() {
        let validated = Validated::default();
        let request = |name: Option<&str>| {
            let r = async_graphql::Request::new("{ a }");
            match name {
                Some(n) => r.operation_name(n),
                None => r,
            }
        };
        assert!(!validated.contains(&request(None)));
        validated.insert(None, "{ a }".to_owned());
        assert!(validated.contains(&request(None)));
        assert!(!validated.contains(&request(Some("A"))));
        for i in 0..PARSED_CACHE {
            validated.insert(None, format!("{{ a{i} }}"));
        }
        assert!(!validated.contains(&request(None)), "emptied when full");
        validated.insert(None, "x".repeat(5000));
        assert!(!validated.contains(&async_graphql::Request::new("x".repeat(5000))));
    }
}
