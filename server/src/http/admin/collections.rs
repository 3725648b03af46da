//! Collections: list, create, edit (fields, rules, indexes, auth settings), delete,
//! and the schema's export and import. Every change goes through `SchemaService`
//! with the PocketBase-shaped body the API takes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use basalt_admin_ui::{
    CollectionFormPage, CollectionRow, CollectionsPage, ConfirmPage, FieldRow, RuleRow,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Admin, Done, Form, admin_message, notice, page, page_with_status, redirect, value};
use crate::AppState;
use crate::schema::{Actor, Collection};

/// The field types a collection may have, as the API names them.
const KINDS: [&str; 11] = [
    "text", "number", "bool", "email", "url", "date", "autodate", "select", "json", "relation",
    "password",
];

/// A field's keys shown as their own inputs; the rest are its options.
const FIELD_KEYS: [&str; 8] = [
    "id",
    "name",
    "type",
    "system",
    "hidden",
    "required",
    "presentable",
    "nullable",
];

/// A collection's keys that are not auth settings.
const BASE_KEYS: [&str; 13] = [
    "id",
    "name",
    "type",
    "system",
    "fields",
    "indexes",
    "listRule",
    "viewRule",
    "createRule",
    "updateRule",
    "deleteRule",
    "created",
    "updated",
];

const RULES: [(&str, &str); 5] = [
    ("listRule", "List/search rule"),
    ("viewRule", "View rule"),
    ("createRule", "Create rule"),
    ("updateRule", "Update rule"),
    ("deleteRule", "Delete rule"),
];

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    done: Option<String>,
}

/// `GET /_/collections`: every collection with its record count.
pub async fn list(
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let q = query.q.clone().unwrap_or_default();
    let mut rows = Vec::new();
    for collection in state.schema.search(&q) {
        let records = state.records.count(&collection.name).await.unwrap_or(0);
        rows.push(CollectionRow {
            name: collection.name.clone(),
            kind: collection.kind.as_str().to_owned(),
            records,
            system: collection.system,
        });
    }
    let mut chrome = admin.chrome("Collections", "collections");
    chrome.notice = notice(query.done.as_deref());
    page(CollectionsPage { chrome, q, rows })
}

/// The editor's rows for `collection` (none: a new one), plus one empty field row.
fn form_page(admin: &Admin, collection: Option<&Collection>) -> CollectionFormPage {
    let json = collection.map(Collection::to_json).unwrap_or(Value::Null);
    let mut fields: Vec<FieldRow> = collection
        .map(|c| {
            c.fields
                .iter()
                .map(|f| {
                    let json = f.to_json();
                    let options: Map<String, Value> = json
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .filter(|(k, _)| !FIELD_KEYS.contains(&k.as_str()))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    FieldRow {
                        id: f.id.clone(),
                        name: f.name.clone(),
                        kind: f.kind.type_name().to_owned(),
                        required: f.required,
                        hidden: f.hidden,
                        options: Value::Object(options).to_string(),
                        system: f.system,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    fields.push(FieldRow {
        kind: "text".into(),
        ..FieldRow::default()
    });
    let rules = RULES
        .iter()
        .map(|(key, label)| {
            let rule = json.get(*key);
            RuleRow {
                key,
                label,
                value: rule.and_then(Value::as_str).unwrap_or_default().to_owned(),
                // New collections start locked, as in PocketBase: superusers only.
                locked: rule.is_none_or(Value::is_null),
                error: String::new(),
            }
        })
        .collect();
    let auth_options = collection.filter(|c| c.auth.is_some()).map(|_| {
        let options: Map<String, Value> = json
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !BASE_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        serde_json::to_string_pretty(&Value::Object(options)).unwrap_or_default()
    });
    CollectionFormPage {
        chrome: admin.chrome(
            collection.map_or("New collection".to_owned(), |c| c.name.clone()),
            "collections",
        ),
        original: collection.map(|c| c.name.clone()).unwrap_or_default(),
        name: collection.map(|c| c.name.clone()).unwrap_or_default(),
        kind: collection.map_or("base", |c| c.kind.as_str()).to_owned(),
        system: collection.is_some_and(|c| c.system),
        fields,
        kinds: KINDS.to_vec(),
        rules,
        indexes: collection.map(|c| c.indexes.join("\n")).unwrap_or_default(),
        auth_options,
        errors: Vec::new(),
        json: if json.is_null() {
            String::new()
        } else {
            serde_json::to_string_pretty(&json).unwrap_or_default()
        },
    }
}

/// `GET /_/collections/new`
pub async fn new_page(admin: Admin) -> HttpResponse {
    page(form_page(&admin, None))
}

/// `GET /_/collections/{name}`
pub async fn edit_page(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    done: web::Query<Done>,
) -> HttpResponse {
    let snapshot = state.schema.snapshot();
    let Some(collection) = snapshot.get(&name) else {
        return admin_message(
            &admin,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such collection.",
        );
    };
    let mut form = form_page(&admin, Some(collection));
    form.chrome.notice = notice(done.done.as_deref());
    page(form)
}

/// The API body the editor's form stands for, and the rows to show it again.
fn body_of(form: &Form, kind: &str) -> (Value, Vec<FieldRow>, Vec<(String, String)>) {
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    for i in 0.. {
        let key = |part: &str| format!("field.{i}.{part}");
        if !form.iter().any(|(k, _)| k == &key("type")) {
            break;
        }
        let row = FieldRow {
            id: value(form, &key("id")).to_owned(),
            name: value(form, &key("name")).trim().to_owned(),
            kind: value(form, &key("type")).to_owned(),
            required: !value(form, &key("required")).is_empty(),
            hidden: !value(form, &key("hidden")).is_empty(),
            options: value(form, &key("options")).to_owned(),
            system: false,
        };
        if !row.name.is_empty() {
            let mut field = match serde_json::from_str::<Value>(row.options.trim()) {
                Ok(Value::Object(options)) => options,
                _ if row.options.trim().is_empty() => Map::new(),
                _ => {
                    errors.push((
                        format!("fields.{}.options", fields.len()),
                        "Options must be a JSON object.".to_owned(),
                    ));
                    Map::new()
                }
            };
            if !row.id.is_empty() {
                field.insert("id".into(), json!(row.id));
            }
            field.insert("name".into(), json!(row.name));
            field.insert("type".into(), json!(row.kind));
            field.insert("required".into(), json!(row.required));
            field.insert("hidden".into(), json!(row.hidden));
            fields.push(Value::Object(field));
        }
        rows.push(row);
    }
    let mut body = Map::new();
    body.insert("name".into(), json!(value(form, "name").trim()));
    body.insert("type".into(), json!(kind));
    body.insert("fields".into(), Value::Array(fields));
    body.insert(
        "indexes".into(),
        json!(
            value(form, "indexes")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        ),
    );
    for (key, _) in RULES {
        let rule = if value(form, &format!("{key}_locked")).is_empty() {
            json!(value(form, key).trim())
        } else {
            Value::Null
        };
        body.insert(key.into(), rule);
    }
    let auth = value(form, "auth_options");
    if !auth.trim().is_empty() {
        match serde_json::from_str::<Value>(auth) {
            Ok(Value::Object(options)) => {
                for (k, v) in options {
                    if !BASE_KEYS.contains(&k.as_str()) {
                        body.insert(k, v);
                    }
                }
            }
            _ => errors.push((
                "auth_options".into(),
                "Auth settings must be a JSON object.".into(),
            )),
        }
    }
    (Value::Object(body), rows, errors)
}

/// Whether the editor is shown again instead of saving, and with what status: a
/// row was asked for (200), or the form itself is malformed (400).
fn shown_again(form: &Form, errors: &[(String, String)]) -> Option<StatusCode> {
    if !errors.is_empty() {
        Some(StatusCode::BAD_REQUEST)
    } else if form.iter().any(|(k, _)| k == "add_field") {
        Some(StatusCode::OK)
    } else {
        None
    }
}

/// The editor again with what was typed and why it was refused.
fn refused(
    admin: &Admin,
    collection: Option<&Collection>,
    form: &Form,
    rows: Vec<FieldRow>,
    errors: Vec<(String, String)>,
    status: StatusCode,
) -> HttpResponse {
    let mut page = form_page(admin, collection);
    page.name = value(form, "name").to_owned();
    if collection.is_none() {
        page.kind = value(form, "type").to_owned();
    }
    // System fields keep their read-only names.
    let system: Vec<String> = collection
        .map(|c| {
            c.fields
                .iter()
                .filter(|f| f.system)
                .map(|f| f.id.clone())
                .collect()
        })
        .unwrap_or_default();
    page.fields = rows
        .into_iter()
        .map(|mut row| {
            row.system = system.contains(&row.id);
            row
        })
        .collect();
    // One empty row to add a field with (the form's own, if it came back empty).
    if page.fields.iter().all(|r| !r.name.is_empty()) {
        page.fields.push(FieldRow {
            kind: "text".into(),
            ..FieldRow::default()
        });
    }
    for rule in &mut page.rules {
        rule.value = value(form, rule.key).to_owned();
        rule.locked = !value(form, &format!("{}_locked", rule.key)).is_empty();
        rule.error = errors
            .iter()
            .filter(|(path, _)| path == rule.key)
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join(" ");
    }
    page.indexes = value(form, "indexes").to_owned();
    if page.auth_options.is_some() {
        page.auth_options = Some(value(form, "auth_options").to_owned());
    }
    page.errors = errors;
    page_with_status(status, page)
}

/// `POST /_/collections/new`
pub async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let kind = if value(&form, "type") == "auth" {
        "auth"
    } else {
        "base"
    };
    let (body, rows, errors) = body_of(&form, kind);
    if let Some(status) = shown_again(&form, &errors) {
        return refused(&admin, None, &form, rows, errors, status);
    }
    match state
        .schema
        .create(&body, &Actor::of(&admin.identity()))
        .await
    {
        Ok(collection) => redirect(&format!(
            "/_/collections/{}?done=created",
            super::urlencode(&collection.name)
        )),
        Err(err) => {
            let problem = err.problem();
            let status = crate::http::error::status_of(problem.code);
            let errors = super::problem_errors(&problem);
            refused(&admin, None, &form, rows, errors, status)
        }
    }
}

/// `POST /_/collections/{name}`: save; removing fields asks first, naming them.
pub async fn update(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let snapshot = state.schema.snapshot();
    let Some(collection) = snapshot.get(&name).cloned() else {
        return admin_message(
            &admin,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such collection.",
        );
    };
    let (body, rows, errors) = body_of(&form, collection.kind.as_str());
    if let Some(status) = shown_again(&form, &errors) {
        return refused(&admin, Some(&collection), &form, rows, errors, status);
    }
    let kept: Vec<&str> = body
        .get("fields")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|f| f.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let removed: Vec<&str> = collection
        .fields
        .iter()
        .filter(|f| !kept.contains(&f.id.as_str()))
        .map(|f| f.name.as_str())
        .collect();
    if !removed.is_empty() && value(&form, "confirmed").is_empty() {
        let records = state.records.count(&collection.name).await.unwrap_or(0);
        let mut hidden: Vec<(String, String)> =
            form.iter().filter(|(k, _)| k != "csrf").cloned().collect();
        hidden.push(("confirmed".into(), "1".into()));
        return page(ConfirmPage {
            chrome: admin.chrome("Remove fields?", "collections"),
            message: format!(
                "Saving removes {} field(s) of `{}`.",
                removed.len(),
                collection.name
            ),
            lost: removed
                .iter()
                .map(|f| format!("field `{f}` and its values in {records} record(s)"))
                .collect(),
            action: format!("/_/collections/{}", super::urlencode(&collection.name)),
            cancel: format!("/_/collections/{}", super::urlencode(&collection.name)),
            hidden,
            type_to_confirm: String::new(),
            button: "Remove and save".into(),
            error: String::new(),
        });
    }
    match state
        .schema
        .update(&collection.id, &body, &Actor::of(&admin.identity()))
        .await
    {
        Ok(updated) => redirect(&format!(
            "/_/collections/{}?done=saved",
            super::urlencode(&updated.name)
        )),
        Err(err) => {
            let problem = err.problem();
            let status = crate::http::error::status_of(problem.code);
            let errors = super::problem_errors(&problem);
            refused(&admin, Some(&collection), &form, rows, errors, status)
        }
    }
}

/// `GET /_/collections/{name}/delete`: what will be lost, and a typed confirmation.
pub async fn delete_page(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
) -> HttpResponse {
    let snapshot = state.schema.snapshot();
    let Some(collection) = snapshot.get(&name).cloned() else {
        return admin_message(
            &admin,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such collection.",
        );
    };
    page(delete_confirmation(&state, &admin, &collection, String::new()).await)
}

async fn delete_confirmation(
    state: &AppState,
    admin: &Admin,
    collection: &Collection,
    error: String,
) -> ConfirmPage {
    let records = state.records.count(&collection.name).await.unwrap_or(0);
    ConfirmPage {
        chrome: admin.chrome(format!("Delete {}?", collection.name), "collections"),
        message: format!(
            "Delete the collection `{}`? This cannot be undone.",
            collection.name
        ),
        lost: vec![
            format!("{records} record(s) of `{}`", collection.name),
            format!(
                "its {} field(s), {} index(es) and its rules",
                collection.fields.len(),
                collection.indexes.len()
            ),
        ],
        action: format!(
            "/_/collections/{}/delete",
            super::urlencode(&collection.name)
        ),
        cancel: format!("/_/collections/{}", super::urlencode(&collection.name)),
        hidden: Vec::new(),
        type_to_confirm: collection.name.clone(),
        button: "Delete the collection".into(),
        error,
    }
}

/// `POST /_/collections/{name}/delete`
pub async fn delete(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let snapshot = state.schema.snapshot();
    let Some(collection) = snapshot.get(&name).cloned() else {
        return admin_message(
            &admin,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such collection.",
        );
    };
    if value(&form, "confirm") != collection.name {
        let page_ = delete_confirmation(
            &state,
            &admin,
            &collection,
            "Type the collection's name to confirm.".into(),
        )
        .await;
        return page_with_status(StatusCode::BAD_REQUEST, page_);
    }
    match state
        .schema
        .delete(&collection.id, &Actor::of(&admin.identity()))
        .await
    {
        Ok(()) => redirect("/_/collections?done=deleted"),
        Err(err) => {
            let problem = err.problem();
            let page_ = delete_confirmation(&state, &admin, &collection, problem.message).await;
            page_with_status(crate::http::error::status_of(problem.code), page_)
        }
    }
}

/// `GET /_/schema`: export, and import with a preview.
pub async fn schema_page(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let json = serde_json::to_string_pretty(&state.schema.export()).unwrap_or_default();
    page(basalt_admin_ui::SchemaPage {
        chrome: admin.chrome("Export / import", "collections"),
        export: json,
        import: String::new(),
        delete_missing: false,
        preview: Vec::new(),
        error: String::new(),
    })
}

/// `GET /_/schema/export`: the schema as a JSON download.
pub async fn export(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"basalt-schema.json\"",
        ))
        .body(serde_json::to_string_pretty(&state.schema.export()).unwrap_or_default())
}

/// `POST /_/schema/import`: first a preview of what changes, then (`apply`) the
/// import.
pub async fn import(
    state: web::Data<AppState>,
    admin: Admin,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let text = value(&form, "import").to_owned();
    let delete_missing = !value(&form, "delete_missing").is_empty();
    let export = serde_json::to_string_pretty(&state.schema.export()).unwrap_or_default();
    let render = |status, preview: Vec<String>, error: String| {
        page_with_status(
            status,
            basalt_admin_ui::SchemaPage {
                chrome: admin.chrome("Export / import", "collections"),
                export: export.clone(),
                import: text.clone(),
                delete_missing,
                preview,
                error,
            },
        )
    };
    let definitions = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(Value::Object(o)) if o.get("collections").is_some_and(Value::is_array) => o
            .get("collections")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => {
            return render(
                StatusCode::BAD_REQUEST,
                Vec::new(),
                "Paste a JSON array of collections (as exported).".into(),
            );
        }
    };
    let plan = match state.schema.plan_import(&definitions, delete_missing) {
        Ok(plan) => plan,
        Err(err) => {
            let problem = err.problem();
            let errors = super::problem_errors(&problem)
                .into_iter()
                .map(|(path, message)| format!("{path}: {message}"))
                .collect::<Vec<_>>()
                .join("\n");
            return render(
                crate::http::error::status_of(problem.code),
                Vec::new(),
                errors,
            );
        }
    };
    let mut preview = plan.describe();
    if value(&form, "apply").is_empty() || preview.is_empty() {
        if preview.is_empty() {
            preview.push("Nothing would change.".into());
        }
        return render(StatusCode::OK, preview, String::new());
    }
    match state
        .schema
        .import(&definitions, delete_missing, &Actor::of(&admin.identity()))
        .await
    {
        Ok(_) => redirect("/_/collections?done=imported"),
        Err(err) => render(StatusCode::BAD_REQUEST, preview, err.problem().message),
    }
}
