//! `GET /api/openapi.json`: an OpenAPI 3.1 document built from the live schema — per
//! collection its record schema and record paths, the auth and collection endpoints,
//! and the one error body. It is built once per schema version and cached, so a
//! schema change is visible on the next request and an unchanged schema costs nothing.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value, json};

use crate::records::read::{DEFAULT_PER_PAGE, MAX_PER_PAGE};
use crate::records::validate::DEFAULT_TEXT_MAX;
use crate::schema::{Collection, Field, FieldKind, Snapshot};

/// The document for the newest schema version asked for, serialized.
#[derive(Debug, Default)]
pub struct OpenApi {
    cached: ArcSwapOption<(i64, bytes::Bytes)>,
}

impl OpenApi {
    /// The document for `snapshot`, built if the cached one is for another version.
    pub fn document(&self, snapshot: &Snapshot) -> bytes::Bytes {
        if let Some(cached) = self.cached.load_full()
            && cached.0 == snapshot.version()
        {
            return cached.1.clone();
        }
        let body = bytes::Bytes::from(build(snapshot).to_string());
        self.cached
            .store(Some(Arc::new((snapshot.version(), body.clone()))));
        body
    }
}

/// The whole document.
pub fn build(snapshot: &Snapshot) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    schemas.insert("Collection".into(), collection_schema());
    schemas.insert(
        "CollectionList".into(),
        page_of("#/components/schemas/Collection"),
    );

    paths.insert("/api/health".into(), health_paths());
    paths.insert("/api/ready".into(), ready_paths());
    paths.insert("/api/openapi.json".into(), openapi_paths());
    paths.insert("/api/batch".into(), batch_paths());
    admin_paths(&mut paths);
    collection_paths(&mut paths);

    for collection in snapshot.all() {
        let base = component_name(&collection.name);
        schemas.insert(format!("{base}Record"), record_schema(collection, snapshot));
        schemas.insert(
            format!("{base}Create"),
            input_schema(collection, Input::Create),
        );
        schemas.insert(
            format!("{base}Update"),
            input_schema(collection, Input::Update),
        );
        schemas.insert(
            format!("{base}List"),
            page_of(&format!("#/components/schemas/{base}Record")),
        );
        record_paths(&mut paths, collection, &base);
        if collection.auth.is_some() {
            auth_paths(&mut paths, collection, &base);
        }
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Basalt",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The API of this Basalt server, generated from its schema (version {}). \
                 Record, auth and collection endpoints follow PocketBase's web API.",
                snapshot.version()
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": error_responses(),
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "An auth token from `auth-with-password`, with or without `Bearer `.",
                },
            },
        },
        "security": [{}, {"token": []}],
    })
}

/// `posts` → `Posts`, `_superusers` → `Superusers`, `blog_posts` → `BlogPosts`.
fn component_name(collection: &str) -> String {
    collection
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"type": "integer"},
            "message": {"type": "string"},
            "data": {
                "type": "object",
                "description": "Per-field problems, by field name.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "code": {
                "type": "string",
                "description": "The domain error's stable code (absent for errors of HTTP itself, like a malformed body).",
                "enum": crate::errors::Code::ALL.iter().map(|c| c.name()).collect::<Vec<_>>(),
            },
        },
    })
}

/// The statuses every endpoint may answer with the error body.
const ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Bad input: malformed JSON, wrong types, unknown fields, a bad filter.",
    ),
    (401, "A token was sent but is invalid or expired."),
    (403, "The caller may not do this."),
    (404, "Not found, or hidden by an access rule."),
    (405, "Method not allowed."),
    (412, "`If-Match` does not match the record's current ETag."),
    (413, "The body is larger than the configured limit."),
    (415, "Unsupported content type."),
    (
        429,
        "Too many requests: a rate limit; `Retry-After` says when to try again.",
    ),
];

fn error_responses() -> Value {
    let mut responses = Map::new();
    for (status, description) in ERRORS {
        responses.insert(
            status.to_string(),
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }),
        );
    }
    responses.insert(
        "default".into(),
        json!({
            "description": "Any other error, in the same shape.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }),
    );
    Value::Object(responses)
}

/// Responses: the given successes plus the listed error statuses and `default`.
fn responses(success: Value, errors: &[u16]) -> Value {
    let mut out = match success {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for status in errors {
        out.insert(
            status.to_string(),
            json!({"$ref": format!("#/components/responses/{status}")}),
        );
    }
    out.insert(
        "default".into(),
        json!({"$ref": "#/components/responses/default"}),
    );
    Value::Object(out)
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["page", "perPage", "totalItems", "totalPages", "items"],
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "perPage": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
            "totalItems": {"type": "integer", "minimum": -1, "description": "-1 with skipTotal"},
            "totalPages": {"type": "integer", "minimum": -1, "description": "-1 with skipTotal"},
            "items": {"type": "array", "items": {"$ref": item}},
        },
    })
}

fn health_paths() -> Value {
    let ok = json!({"200": json_response("Serving.", json!({
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {"type": "object"}},
    }))});
    json!({
        "get": {"summary": "Liveness", "operationId": "health", "tags": ["health"], "security": [{}], "responses": responses(ok.clone(), &[])},
        "head": {"summary": "Liveness (no body)", "operationId": "healthHead", "tags": ["health"], "security": [{}], "responses": {"200": {"description": "Serving."}}},
    })
}

fn ready_paths() -> Value {
    let body = json!({
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"type": "integer"},
            "message": {"type": "string"},
            "data": {
                "type": "object",
                "description": "One check per dependency: `database`, and `redis` / `rabbitmq` when configured.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string", "enum": ["up", "down"]}, "message": {"type": "string"}},
                },
            },
        },
    });
    json!({"get": {
        "summary": "Readiness: the database and every configured service answer",
        "operationId": "ready",
        "tags": ["health"],
        "security": [{}],
        "responses": {
            "200": json_response("Every dependency answers.", body.clone()),
            "503": json_response("A dependency is down; `data` names it.", body),
        },
    }})
}

fn openapi_paths() -> Value {
    json!({"get": {
        "summary": "This document",
        "operationId": "openapi",
        "tags": ["meta"],
        "security": [{}],
        "responses": {"200": json_response("The OpenAPI document for the current schema.", json!({"type": "object"}))},
    }})
}

fn batch_paths() -> Value {
    let request = json!({
        "type": "object",
        "required": ["requests"],
        "properties": {"requests": {"type": "array", "items": {
            "type": "object",
            "required": ["method", "url"],
            "properties": {
                "method": {"type": "string", "enum": ["GET", "POST", "PATCH", "PUT", "DELETE"]},
                "url": {"type": "string", "examples": ["/api/collections/posts/records"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "object"},
            },
        }}},
    });
    let result = json!({"type": "array", "items": {
        "type": "object",
        "required": ["status", "body"],
        "properties": {"status": {"type": "integer"}, "body": {}},
    }});
    json!({"post": {
        "summary": "Several record writes in one transaction",
        "description": "All succeed or none is applied; a failure answers 400 naming the failing request's index in `data.requests`.",
        "operationId": "batch",
        "tags": ["records"],
        "requestBody": {"required": true, "content": {"application/json": {"schema": request}}},
        "responses": responses(json!({"200": json_response("One result per request, in order.", result)}), &[400, 401, 403, 413]),
    }})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn collection_paths(paths: &mut Map<String, Value>) {
    let superuser = json!([{"token": []}]);
    let body =
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    let collection = path_param("collection", "The collection's id or name.");
    paths.insert(
        "/api/collections".into(),
        json!({
            "get": {
                "summary": "List collections (superusers)",
                "operationId": "listCollections",
                "tags": ["collections"],
                "security": superuser,
                "parameters": [
                    query_param("page", "1-based page number.", json!({"type": "integer", "minimum": 1})),
                    query_param("perPage", "Page size.", json!({"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE})),
                    query_param("filter", "`name = 'x'`, `name ~ 'x'`, `type = 'auth'`, joined by `&&`.", json!({"type": "string"})),
                    query_param("skipTotal", "Skip counting.", json!({"type": "boolean"})),
                ],
                "responses": responses(json!({"200": json_response("A page of collections.", schema_ref("CollectionList"))}), &[400, 401, 403]),
            },
            "post": {
                "summary": "Create a collection (superusers)",
                "operationId": "createCollection",
                "tags": ["collections"],
                "security": superuser,
                "requestBody": body,
                "responses": responses(json!({"200": json_response("The new collection.", schema_ref("Collection"))}), &[400, 401, 403, 413]),
            },
        }),
    );
    paths.insert(
        "/api/collections/import".into(),
        json!({"put": {
            "summary": "Import collections (superusers)",
            "operationId": "importCollections",
            "tags": ["collections"],
            "security": superuser,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["collections"],
                "properties": {
                    "collections": {"type": "array", "items": {"type": "object"}},
                    "deleteMissing": {"type": "boolean"},
                },
            }}}},
            "responses": responses(json!({"204": {"description": "Imported."}}), &[400, 401, 403, 413]),
        }}),
    );
    paths.insert(
        "/api/collections/{collection}".into(),
        json!({
            "parameters": [collection],
            "get": {
                "summary": "View a collection (superusers)",
                "operationId": "viewCollection",
                "tags": ["collections"],
                "security": superuser,
                "responses": responses(json!({"200": json_response("The collection.", schema_ref("Collection"))}), &[401, 403, 404]),
            },
            "patch": {
                "summary": "Update a collection (superusers)",
                "operationId": "updateCollection",
                "tags": ["collections"],
                "security": superuser,
                "requestBody": body,
                "responses": responses(json!({"200": json_response("The collection as saved.", schema_ref("Collection"))}), &[400, 401, 403, 404, 413]),
            },
            "delete": {
                "summary": "Delete a collection and its records (superusers)",
                "operationId": "deleteCollection",
                "tags": ["collections"],
                "security": superuser,
                "responses": responses(json!({"204": {"description": "Deleted."}}), &[400, 401, 403, 404]),
            },
        }),
    );
}

fn collection_schema() -> Value {
    let rule = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "required": ["id", "name", "type", "system", "fields", "indexes", "listRule", "viewRule", "createRule", "updateRule", "deleteRule", "created", "updated"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string", "enum": ["base", "auth"]},
            "system": {"type": "boolean"},
            "fields": {"type": "array", "items": {
                "type": "object",
                "required": ["id", "name", "type"],
                "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "type": {"type": "string"}},
            }},
            "indexes": {"type": "array", "items": {"type": "string"}},
            "listRule": rule, "viewRule": rule, "createRule": rule, "updateRule": rule, "deleteRule": rule,
            "created": {"type": "string"},
            "updated": {"type": "string"},
        },
    })
}

/// A field is returned to nobody (passwords, token keys).
fn secret(field: &Field) -> bool {
    matches!(field.kind, FieldKind::Password { .. }) || field.name == "tokenKey"
}

fn nullable(field: &Field, mut schema: Value) -> Value {
    if field.nullable
        && let Some(Value::String(kind)) = schema.get("type").cloned()
        && let Some(map) = schema.as_object_mut()
    {
        map.insert("type".into(), json!([kind, "null"]));
    }
    schema
}

/// The JSON a field's value has in a record.
fn value_schema(field: &Field, snapshot: &Snapshot) -> Value {
    let schema = match &field.kind {
        FieldKind::Text { .. }
        | FieldKind::Email { .. }
        | FieldKind::Url { .. }
        | FieldKind::Date { .. }
        | FieldKind::Autodate { .. }
        | FieldKind::Password { .. } => json!({"type": "string"}),
        FieldKind::Number { .. } => json!({"type": "number"}),
        FieldKind::Bool => json!({"type": "boolean"}),
        FieldKind::Json { .. } => json!({}),
        FieldKind::Select { values, max_select } => {
            let mut allowed: Vec<Value> = values.iter().map(|v| json!(v)).collect();
            if *max_select > 1 {
                json!({"type": "array", "items": {"type": "string", "enum": allowed}})
            } else {
                allowed.push(json!(""));
                json!({"type": "string", "enum": allowed})
            }
        }
        FieldKind::Relation {
            collection_id,
            max_select,
            ..
        } => {
            let target = snapshot
                .by_id(collection_id)
                .map_or_else(|| collection_id.clone(), |c| c.name.clone());
            let description = format!("Id(s) of `{target}` records.");
            if *max_select > 1 {
                json!({"type": "array", "items": {"type": "string"}, "description": description})
            } else {
                json!({"type": "string", "description": description})
            }
        }
    };
    nullable(field, schema)
}

/// A record as responses carry it. Nothing is `required`: `fields` may pick any
/// subset, hidden fields reach superusers only and `email` only those allowed.
fn record_schema(collection: &Collection, snapshot: &Snapshot) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "collectionId".into(),
        json!({"type": "string", "const": collection.id}),
    );
    properties.insert(
        "collectionName".into(),
        json!({"type": "string", "const": collection.name}),
    );
    for field in collection.fields.iter().filter(|f| !secret(f)) {
        let mut schema = value_schema(field, snapshot);
        if field.hidden
            && let Some(map) = schema.as_object_mut()
        {
            map.insert(
                "description".into(),
                json!("Hidden: returned to superusers only."),
            );
        }
        properties.insert(field.name.clone(), schema);
    }
    let mut expand = Map::new();
    for field in &collection.fields {
        if let FieldKind::Relation {
            collection_id,
            max_select,
            ..
        } = &field.kind
            && let Some(target) = snapshot.by_id(collection_id)
        {
            let item = schema_ref(&format!("{}Record", component_name(&target.name)));
            let schema = if *max_select > 1 {
                json!({"type": "array", "items": item})
            } else {
                item
            };
            expand.insert(field.name.clone(), schema);
        }
    }
    properties.insert(
        "expand".into(),
        json!({
            "type": "object",
            "description": "Related records asked for with `expand` (relations and back-relations such as `comments_via_post`).",
            "properties": expand,
        }),
    );
    json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    Create,
    Update,
}

/// The JSON a create or update may carry: every writable field, typed with its
/// options; on update also the modifiers (`n+`, `tags+`, `+tags`, `tags-`).
fn input_schema(collection: &Collection, mode: Input) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in &collection.fields {
        if matches!(field.kind, FieldKind::Autodate { .. }) || field.name == "tokenKey" {
            continue;
        }
        if field.name == "id" && mode == Input::Update {
            continue;
        }
        let mut schema = input_value_schema(field);
        if field.required && field.name != "id" {
            schema = not_blank(&field.kind, schema);
            if mode == Input::Create && field.default.is_none() {
                required.push(json!(field.name));
            }
        }
        let schema = nullable(field, schema);
        match &field.kind {
            FieldKind::Number { .. } if mode == Input::Update => {
                for suffix in ["+", "-"] {
                    properties.insert(
                        format!("{}{suffix}", field.name),
                        json!({"type": "number", "description": "Add to / subtract from the stored value, atomically."}),
                    );
                }
            }
            kind if kind.is_multi() && mode == Input::Update => {
                let items = schema
                    .get("items")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "string"}));
                let modifier = json!({"anyOf": [items.clone(), {"type": "array", "items": items}]});
                properties.insert(format!("{}+", field.name), modifier.clone());
                properties.insert(format!("+{}", field.name), modifier.clone());
                properties.insert(format!("{}-", field.name), modifier);
            }
            _ => {}
        }
        properties.insert(field.name.clone(), schema);
    }
    if collection.auth.is_some() {
        properties.insert("passwordConfirm".into(), json!({"type": "string"}));
        if mode == Input::Update {
            properties.insert("oldPassword".into(), json!({"type": "string"}));
        }
        if mode == Input::Create && required.contains(&json!("password")) {
            required.push(json!("passwordConfirm"));
        }
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// A required field refuses its type's zero value: `""`, `[]`, `0`, `false`.
fn not_blank(kind: &FieldKind, mut schema: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        match kind {
            FieldKind::Bool => {
                map.insert("const".into(), json!(true));
            }
            FieldKind::Number { .. } => {
                map.insert("not".into(), json!({"const": 0}));
            }
            FieldKind::Json { .. } => {
                map.insert("not".into(), json!({"enum": [null, "", 0, false, [], {}]}));
            }
            kind if kind.is_multi() => {
                map.insert("minItems".into(), json!(1));
            }
            _ => {
                let min = map.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                map.insert("minLength".into(), json!(min.max(1)));
                if let Some(Value::Array(values)) = map.get_mut("enum") {
                    values.retain(|v| v != "");
                }
            }
        }
    }
    schema
}

/// What a client may send for a field, with its options as constraints.
fn input_value_schema(field: &Field) -> Value {
    match &field.kind {
        FieldKind::Text {
            min, max, pattern, ..
        } => {
            let mut schema = json!({"type": "string", "maxLength": if *max > 0 { *max } else { DEFAULT_TEXT_MAX }});
            if let Some(map) = schema.as_object_mut() {
                if *min > 0 {
                    map.insert("minLength".into(), json!(min));
                }
                if !pattern.is_empty() {
                    map.insert("pattern".into(), json!(pattern));
                }
            }
            schema
        }
        FieldKind::Password { min, max, .. } => {
            let mut schema = json!({"type": "string"});
            if let Some(map) = schema.as_object_mut() {
                if *min > 0 {
                    map.insert("minLength".into(), json!(min));
                }
                if *max > 0 {
                    map.insert("maxLength".into(), json!(max));
                }
            }
            schema
        }
        FieldKind::Number { min, max, only_int } => {
            let mut schema = json!({"type": if *only_int { "integer" } else { "number" }});
            if let Some(map) = schema.as_object_mut() {
                if let Some(min) = min {
                    map.insert("minimum".into(), json!(min));
                }
                if let Some(max) = max {
                    map.insert("maximum".into(), json!(max));
                }
            }
            schema
        }
        FieldKind::Email { .. } => json!({"type": "string", "format": "email"}),
        FieldKind::Url { .. } => json!({"type": "string", "format": "uri"}),
        FieldKind::Date { .. } => {
            json!({"type": "string", "examples": ["2026-01-31 12:00:00.000Z"]})
        }
        _ => {
            let mut schema = value_schema_plain(field);
            if let Some(map) = schema.as_object_mut() {
                map.remove("description");
            }
            schema
        }
    }
}

/// [`value_schema`] without a snapshot (relations as plain ids), not nullable.
fn value_schema_plain(field: &Field) -> Value {
    let plain = Field {
        nullable: false,
        ..field.clone()
    };
    value_schema(&plain, &Snapshot::default())
}

fn record_paths(paths: &mut Map<String, Value>, collection: &Collection, base: &str) {
    let name = &collection.name;
    let tag = json!([name]);
    let fields = query_param(
        "fields",
        "Comma-separated paths to return (`*`, `expand.author.name`, `body:excerpt(200,true)`).",
        json!({"type": "string"}),
    );
    let expand = query_param(
        "expand",
        "Relations to expand, comma-separated, up to 6 levels (`author,comments_via_post.author`).",
        json!({"type": "string"}),
    );
    let id = path_param("id", "The record's id.");
    let if_match = json!({"name": "If-Match", "in": "header", "required": false,
        "description": "The ETag from a GET; a mismatch answers 412.", "schema": {"type": "string"}});
    let record = schema_ref(&format!("{base}Record"));
    let body = |schema: &str| {
        json!({"required": true, "content": {
            "application/json": {"schema": schema_ref(schema)},
            "multipart/form-data": {"schema": {"type": "object", "description": "The same fields as form values; `@jsonPayload` may carry JSON."}},
        }})
    };
    let rule = |rule: &Option<String>| match rule {
        None => "Superusers only.".to_owned(),
        Some(r) if r.is_empty() => "Anyone.".to_owned(),
        Some(r) => format!("Rule: `{r}`."),
    };
    let rules = &collection.rules;
    paths.insert(
        format!("/api/collections/{name}/records"),
        json!({
            "get": {
                "summary": format!("List {name} records"),
                "description": rule(&rules.list),
                "operationId": format!("list{base}"),
                "tags": tag,
                "parameters": [
                    query_param("page", "1-based page number.", json!({"type": "integer", "minimum": 1})),
                    query_param("perPage", &format!("Page size (default {DEFAULT_PER_PAGE})."), json!({"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE})),
                    query_param("sort", "Fields, comma-separated; `-` for descending; `@random`.", json!({"type": "string"})),
                    query_param("filter", "A filter expression, e.g. `title ~ 'abc' && created > '2026-01-01'`.", json!({"type": "string", "maxLength": 3500})),
                    expand.clone(),
                    fields.clone(),
                    query_param("skipTotal", "Skip counting (`totalItems` and `totalPages` are -1).", json!({"type": "boolean"})),
                ],
                "responses": responses(json!({"200": json_response("A page of records.", schema_ref(&format!("{base}List")))}), &[400, 401, 403]),
            },
            "post": {
                "summary": format!("Create a {name} record"),
                "description": rule(&rules.create),
                "operationId": format!("create{base}"),
                "tags": tag,
                "parameters": [expand.clone(), fields.clone()],
                "requestBody": body(&format!("{base}Create")),
                "responses": responses(json!({
                    "200": json_response("The new record.", record.clone()),
                    "204": {"description": "Created; the view rule hides it from the caller."},
                }), &[400, 401, 403, 413, 415]),
            },
        }),
    );
    paths.insert(
        format!("/api/collections/{name}/records/{{id}}"),
        json!({
            "parameters": [id],
            "get": {
                "summary": format!("View a {name} record"),
                "description": rule(&rules.view),
                "operationId": format!("view{base}"),
                "tags": tag,
                "parameters": [expand.clone(), fields.clone()],
                "responses": responses(json!({"200": {
                    "description": "The record.",
                    "headers": {"ETag": {"description": "Send it back in `If-Match`.", "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": record.clone()}},
                }}), &[400, 401, 403, 404]),
            },
            "patch": {
                "summary": format!("Update a {name} record"),
                "description": rule(&rules.update),
                "operationId": format!("update{base}"),
                "tags": tag,
                "parameters": [expand, fields, if_match.clone()],
                "requestBody": body(&format!("{base}Update")),
                "responses": responses(json!({
                    "200": json_response("The record as saved.", record),
                    "204": {"description": "Saved; the view rule hides it from the caller."},
                }), &[400, 401, 403, 404, 412, 413, 415]),
            },
            "delete": {
                "summary": format!("Delete a {name} record"),
                "description": rule(&rules.delete),
                "operationId": format!("delete{base}"),
                "tags": tag,
                "parameters": [if_match],
                "responses": responses(json!({"204": {"description": "Deleted (and its cascade)."}}), &[400, 401, 403, 404, 412]),
            },
        }),
    );
}

/// `{token, record}` for an auth collection's record schema.
fn auth_response(base: &str) -> Value {
    json!({
        "type": "object",
        "required": ["token", "record"],
        "properties": {"token": {"type": "string"}, "record": schema_ref(&format!("{base}Record")), "meta": {"type": "object"}},
    })
}

fn json_body(properties: Value, required: &[&str]) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required, "additionalProperties": false,
    }}}})
}

/// The auth endpoints of an auth collection beyond password sign-in.
fn auth_flow_paths(paths: &mut Map<String, Value>, collection: &Collection, base: &str) {
    let name = &collection.name;
    let tag = json!([name]);
    let no_content = json!({"204": {"description": "Done (also when no account has this email)."}});
    let string = json!({"type": "string"});
    let mut post = |action: &str,
                    summary: &str,
                    body: Option<Value>,
                    ok: Value,
                    errors: &[u16],
                    token: bool| {
        let mut op = json!({
            "summary": format!("{summary} ({name})"),
            "operationId": format!("{}{base}", action.replace('-', "_")),
            "tags": tag,
            "responses": responses(ok, errors),
        });
        if let Some(map) = op.as_object_mut() {
            if let Some(body) = body {
                map.insert("requestBody".into(), body);
            }
            if !token {
                map.insert("security".into(), json!([{}]));
            }
        }
        paths.insert(
            format!("/api/collections/{name}/{action}"),
            json!({"post": op}),
        );
    };
    let signed_in = json_response("A new token and the record.", auth_response(base));
    post(
        "auth-refresh",
        "Refresh the auth token",
        None,
        json!({"200": signed_in.clone()}),
        &[401, 403, 429],
        true,
    );
    post(
        "auth-logout",
        "Sign the caller out everywhere (every token of theirs stops working)",
        None,
        json!({"204": {"description": "Every earlier token of the caller is refused from now on."}}),
        &[401, 403],
        true,
    );
    post(
        "auth-with-oauth2",
        "Sign in with an OAuth2 provider (authorization code + PKCE)",
        Some(json_body(
            json!({
                "provider": string, "code": string, "codeVerifier": string, "redirectURL": string,
                "createData": {"type": "object"},
            }),
            &["provider", "code", "codeVerifier", "redirectURL"],
        )),
        json!({"200": signed_in.clone()}),
        &[400, 429],
        false,
    );
    post(
        "request-verification",
        "Mail a verification link",
        Some(json_body(json!({"email": string}), &["email"])),
        no_content.clone(),
        &[400, 429],
        false,
    );
    post(
        "confirm-verification",
        "Confirm a verification token",
        Some(json_body(json!({"token": string}), &["token"])),
        json!({"204": {"description": "Verified."}}),
        &[400, 429],
        false,
    );
    post(
        "request-password-reset",
        "Mail a password-reset link",
        Some(json_body(json!({"email": string}), &["email"])),
        no_content.clone(),
        &[400, 429],
        false,
    );
    post(
        "confirm-password-reset",
        "Set a new password with a reset token",
        Some(json_body(
            json!({"token": string, "password": string, "passwordConfirm": string}),
            &["token", "password", "passwordConfirm"],
        )),
        json!({"204": {"description": "Password set; every session ended."}}),
        &[400, 429],
        false,
    );
    post(
        "request-email-change",
        "Mail a link to confirm a new email",
        Some(json_body(json!({"newEmail": string}), &["newEmail"])),
        json!({"204": {"description": "Mail sent."}}),
        &[400, 401, 429],
        true,
    );
    post(
        "confirm-email-change",
        "Switch to the new email with its token and the password",
        Some(json_body(
            json!({"token": string, "password": string}),
            &["token", "password"],
        )),
        json!({"204": {"description": "Email changed; every session ended."}}),
        &[400, 429],
        false,
    );
    paths.insert(
        format!("/api/collections/{name}/auth-methods"),
        json!({"get": {
            "summary": format!("How records of {name} can sign in"),
            "operationId": format!("authMethods{base}"),
            "tags": tag,
            "security": [{}],
            "responses": responses(json!({"200": json_response("Password and OAuth2 options.", json!({
                "type": "object",
                "required": ["password", "oauth2", "mfa", "otp"],
                "properties": {"password": {"type": "object"}, "oauth2": {"type": "object"}, "mfa": {"type": "object"}, "otp": {"type": "object"}},
            }))}), &[400, 429]),
        }}),
    );
    paths.insert(
        format!("/api/collections/{name}/impersonate/{{id}}"),
        json!({"post": {
            "summary": format!("A non-refreshable token for any {name} record (superusers)"),
            "operationId": format!("impersonate{base}"),
            "tags": tag,
            "parameters": [path_param("id", "The record's id.")],
            "requestBody": {"required": false, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"duration": {"type": "integer", "minimum": 0}}, "additionalProperties": false,
            }}}},
            "responses": responses(json!({"200": signed_in}), &[400, 401, 403, 404, 429]),
        }}),
    );
    paths.insert(
        format!("/api/collections/{name}/records/{{id}}/revoke-sessions"),
        json!({"post": {
            "summary": format!("End every session of a {name} record (superusers, or the record itself)"),
            "operationId": format!("revokeSessions{base}"),
            "tags": tag,
            "parameters": [path_param("id", "The record's id.")],
            "responses": responses(json!({"204": {"description": "Every earlier token is refused from now on."}}), &[401, 403, 404]),
        }}),
    );
}

/// API keys and stored mails (superusers).
fn admin_paths(paths: &mut Map<String, Value>) {
    let key = json!({
        "type": "object",
        "required": ["id", "name", "scopes", "created"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "scopes": {},
            "expires": {"type": ["string", "null"]}, "revoked": {"type": ["string", "null"]},
            "lastUsed": {"type": ["string", "null"]}, "created": {"type": "string"},
            "key": {"type": "string", "description": "The secret, in the create response only."},
        },
    });
    paths.insert(
        "/api/keys".into(),
        json!({
            "get": {
                "summary": "List API keys (superusers)",
                "operationId": "listKeys",
                "tags": ["keys"],
                "responses": responses(json!({"200": json_response("Every key, without secrets.", json!({
                    "type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": key.clone()}},
                }))}), &[401, 403]),
            },
            "post": {
                "summary": "Create an API key (superusers); its secret is shown once",
                "operationId": "createKey",
                "tags": ["keys"],
                "requestBody": json_body(json!({
                    "name": {"type": "string"},
                    "scopes": {"anyOf": [{"const": "superuser"}, {"type": "array", "items": {
                        "type": "object",
                        "properties": {"collection": {"type": "string"}, "operations": {"type": "array", "items": {"enum": ["list", "view", "create", "update", "delete"]}}},
                    }}]},
                    "expires": {"type": ["string", "null"]},
                }), &["name", "scopes"]),
                "responses": responses(json!({"200": json_response("The key, with `key`.", key)}), &[400, 401, 403]),
            },
        }),
    );
    paths.insert(
        "/api/keys/{id}".into(),
        json!({"delete": {
            "summary": "Revoke an API key (superusers)",
            "operationId": "revokeKey",
            "tags": ["keys"],
            "parameters": [path_param("id", "The key's id.")],
            "responses": responses(json!({"204": {"description": "Revoked."}}), &[401, 403, 404]),
        }}),
    );
    paths.insert(
        "/api/mails".into(),
        json!({"get": {
            "summary": "Mails stored because no SMTP server is configured (superusers)",
            "operationId": "listMails",
            "tags": ["mails"],
            "parameters": [
                query_param("page", "1-based page number.", json!({"type": "integer", "minimum": 1})),
                query_param("perPage", "Page size.", json!({"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE})),
            ],
            "responses": responses(json!({"200": json_response("A page of mails, newest first.", json!({
                "type": "object",
                "required": ["page", "perPage", "totalItems", "totalPages", "items"],
                "properties": {"items": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "kind", "to", "subject", "body", "created"],
                    "properties": {"id": {"type": "string"}, "kind": {"type": "string"}, "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}, "created": {"type": "string"}},
                }}},
            }))}), &[400, 401, 403]),
        }}),
    );
}

fn auth_paths(paths: &mut Map<String, Value>, collection: &Collection, base: &str) {
    auth_flow_paths(paths, collection, base);
    let name = &collection.name;
    paths.insert(
        format!("/api/collections/{name}/auth-with-password"),
        json!({"post": {
            "summary": format!("Sign in to {name} with a password"),
            "operationId": format!("authWithPassword{base}"),
            "tags": [name],
            "security": [{}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["identity", "password"],
                "properties": {
                    "identity": {"type": "string", "description": "The email (or another identity field)."},
                    "password": {"type": "string"},
                    "identityField": {"type": "string"},
                },
            }}}},
            "responses": responses(json!({"200": json_response("A token and the signed-in record.", json!({
                "type": "object",
                "required": ["token", "record"],
                "properties": {"token": {"type": "string"}, "record": schema_ref(&format!("{base}Record"))},
            }))}), &[400, 401, 403, 413, 429]),
        }}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_are_pascal_case() {
        assert_eq!(component_name("posts"), "Posts");
        assert_eq!(component_name("_superusers"), "Superusers");
        assert_eq!(component_name("blog_posts"), "BlogPosts");
    }
}
