//! Records: a table per collection (filter, sort, pages, columns), forms generated
//! from the field types, delete and bulk delete, raw JSON, and the account actions of
//! auth collections. Everything goes through `RecordService` as the signed-in
//! superuser, exactly as the API would.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use basalt_admin_ui::{
    Choice, Column, ConfirmPage, Input, JsonPage, RecordFormPage, RecordRow, RecordsPage,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Admin, Done, Form, admin_message, notice, page, page_with_status, redirect, urlencode,
};
use crate::AppState;
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::records::read::ListQuery as RecordQuery;
use crate::schema::{Collection, FieldKind};

fn request(method: &str, identity: &Identity) -> Request {
    let mut request = Request::new(method);
    request.auth = crate::records::read::request_auth(identity);
    request
}

fn collection_of(
    state: &AppState,
    admin: &Admin,
    name: &str,
) -> Result<std::sync::Arc<Collection>, super::Refusal> {
    state.schema.snapshot().get(name).cloned().ok_or_else(|| {
        super::stop(admin_message(
            admin,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such collection.",
        ))
    })
}

/// A value as one line of a table cell.
fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    filter: Option<String>,
    sort: Option<String>,
    page: Option<u64>,
    per_page: Option<u64>,
    done: Option<String>,
}

/// `GET /_/collections/{name}/records`
pub async fn list(
    state: web::Data<AppState>,
    admin: Admin,
    req: HttpRequest,
    name: web::Path<String>,
    params: web::Query<ListParams>,
) -> HttpResponse {
    let collection = or_page!(collection_of(&state, &admin, &name));
    // `cols` repeats: read it from the query string itself.
    let chosen: Vec<String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == "cols")
        .map(|(_, v)| v.into_owned())
        .collect();
    let visible = |field: &str| {
        if chosen.is_empty() {
            !matches!(field, "password" | "tokenKey")
        } else {
            chosen.iter().any(|c| c == field)
        }
    };
    let filter = params.filter.clone().unwrap_or_default();
    let sort = params.sort.clone().unwrap_or_else(|| "-created".into());
    let sort = if collection.field("created").is_some() || sort != "-created" {
        sort
    } else {
        String::new()
    };
    let per_page = params.per_page.unwrap_or(30).clamp(1, 500);
    let page_no = params.page.unwrap_or(1).max(1);
    let identity = admin.identity();
    let query = RecordQuery {
        page: Some(page_no),
        per_page: Some(per_page),
        sort: (!sort.is_empty()).then(|| sort.clone()),
        filter: (!filter.trim().is_empty()).then(|| filter.clone()),
        skip_total: false,
        expand: None,
        condition: None,
    };
    let link = |sort: &str, page: u64| {
        let mut out = format!(
            "/_/collections/{}/records?filter={}&sort={}&page={page}&perPage={per_page}",
            urlencode(&collection.name),
            urlencode(&filter),
            urlencode(sort)
        );
        for c in &chosen {
            out.push_str("&cols=");
            out.push_str(&urlencode(c));
        }
        out
    };
    let (result, error) = match state
        .records
        .list(
            &collection.name,
            &identity,
            &request("GET", &identity),
            &query,
        )
        .await
    {
        Ok(result) => (Some(result), String::new()),
        Err(err) => (None, err.problem().message),
    };
    let columns: Vec<Column> = collection
        .fields
        .iter()
        .map(|f| {
            let (next, sorted) = if sort == f.name {
                (format!("-{}", f.name), "▲")
            } else if sort == format!("-{}", f.name) {
                (f.name.clone(), "▼")
            } else {
                (f.name.clone(), "")
            };
            Column {
                name: f.name.clone(),
                shown: visible(&f.name),
                sort_link: link(&next, 1),
                sorted,
            }
        })
        .collect();
    let (rows, total, pages) = match &result {
        Some(result) => (
            result
                .items
                .iter()
                .map(|item| RecordRow {
                    id: item["id"].as_str().unwrap_or_default().to_owned(),
                    cells: columns
                        .iter()
                        .filter(|c| c.shown)
                        .map(|c| cell(item.get(&c.name)))
                        .collect(),
                })
                .collect(),
            result.total_items,
            result.total_pages,
        ),
        None => (Vec::new(), 0, 0),
    };
    let mut chrome = admin.chrome(collection.name.clone(), "collections");
    chrome.notice = notice(params.done.as_deref());
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    page_with_status(
        status,
        RecordsPage {
            chrome,
            collection: collection.name.clone(),
            filter: filter.clone(),
            sort: sort.clone(),
            page: page_no,
            per_page,
            total,
            pages,
            prev: if page_no > 1 {
                link(&sort, page_no - 1)
            } else {
                String::new()
            },
            next: if (page_no as i64) < pages {
                link(&sort, page_no + 1)
            } else {
                String::new()
            },
            columns,
            rows,
            error,
        },
    )
}

/// The choices of a relation input: records of the related collection (the first
/// 200, newest first), labelled by their first presentable or text field.
async fn relation_choices(
    state: &AppState,
    admin: &Admin,
    collection_id: &str,
    selected: &[String],
) -> Vec<Choice> {
    let snapshot = state.schema.snapshot();
    let Some(related) = snapshot.by_id(collection_id).cloned() else {
        return Vec::new();
    };
    let label_field = related
        .fields
        .iter()
        .find(|f| f.presentable)
        .or_else(|| {
            related.fields.iter().find(|f| {
                f.name != "id" && matches!(f.kind, FieldKind::Text { .. } | FieldKind::Email { .. })
            })
        })
        .map(|f| f.name.clone());
    let identity = admin.identity();
    let query = RecordQuery {
        page: Some(1),
        per_page: Some(200),
        sort: None,
        filter: None,
        skip_total: true,
        expand: None,
        condition: None,
    };
    let items = state
        .records
        .list(&related.name, &identity, &request("GET", &identity), &query)
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let id = item["id"].as_str().unwrap_or_default().to_owned();
            let label = match label_field.as_ref().map(|f| cell(item.get(f))) {
                Some(text) if !text.is_empty() => format!("{text} ({id})"),
                _ => id.clone(),
            };
            Choice {
                selected: selected.contains(&id),
                value: id,
                label,
            }
        })
        .collect()
}

/// The inputs of `collection`'s form, filled from `record` (or empty).
async fn inputs(
    state: &AppState,
    admin: &Admin,
    collection: &Collection,
    record: Option<&Map<String, Value>>,
    errors: &[(String, String)],
) -> Vec<Input> {
    let mut inputs = Vec::new();
    for field in &collection.fields {
        if field.name == "tokenKey" {
            continue;
        }
        let current = record.and_then(|r| r.get(&field.name));
        let strings: Vec<String> = match current {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect(),
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        };
        let mut input = Input {
            name: field.name.clone(),
            kind: "text",
            value: match current {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            },
            checked: current.and_then(Value::as_bool).unwrap_or(false),
            choices: Vec::new(),
            multiple: field.kind.is_multi(),
            required: field.required,
            help: String::new(),
            error: errors
                .iter()
                .filter(|(p, _)| p == &field.name)
                .map(|(_, m)| m.clone())
                .collect::<Vec<_>>()
                .join(" "),
        };
        input.kind = match &field.kind {
            FieldKind::Text { primary_key, .. } if *primary_key => {
                if record.is_some() {
                    "readonly"
                } else {
                    input.help = "Leave empty for a generated id.".into();
                    "text"
                }
            }
            FieldKind::Text { max, .. } if *max == 0 || *max > 255 => "textarea",
            FieldKind::Text { .. } => "text",
            FieldKind::Number { .. } => "number",
            FieldKind::Bool => "bool",
            FieldKind::Email { .. } => "email",
            FieldKind::Url { .. } => "url",
            FieldKind::Date { .. } => {
                input.help = "As 2024-01-31 10:00:00.000Z".into();
                "text"
            }
            FieldKind::Autodate { .. } => "readonly",
            FieldKind::Select { values, .. } => {
                input.choices = values
                    .iter()
                    .map(|v| Choice {
                        value: v.clone(),
                        label: v.clone(),
                        selected: strings.contains(v),
                    })
                    .collect();
                "select"
            }
            FieldKind::Json { .. } => {
                input.value = current
                    .filter(|v| !v.is_null())
                    .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
                    .unwrap_or_default();
                "json"
            }
            FieldKind::Relation { collection_id, .. } => {
                input.choices = relation_choices(state, admin, collection_id, &strings).await;
                "relation"
            }
            FieldKind::Password { .. } => {
                input.value = String::new();
                input.help = if record.is_some() {
                    "Leave empty to keep the password.".into()
                } else {
                    String::new()
                };
                "password"
            }
        };
        inputs.push(input);
    }
    inputs
}

/// The record values a form stands for: repeated keys become lists, empty optional
/// inputs are left out (a create) or cleared (an update), passwords only when typed.
fn values_of(collection: &Collection, form: &Form, update: bool) -> Map<String, Value> {
    let mut raw: Map<String, Value> = Map::new();
    for field in &collection.fields {
        let given: Vec<&str> = super::values(form, &field.name);
        if given.is_empty() {
            if field.kind.is_multi() && form.iter().any(|(k, _)| k == "csrf") && update {
                // A multi-select with nothing selected sends nothing: that is "none".
                if matches!(
                    field.kind,
                    FieldKind::Select { .. } | FieldKind::Relation { .. }
                ) {
                    raw.insert(field.name.clone(), Value::Array(Vec::new()));
                }
            }
            continue;
        }
        let value = match &field.kind {
            FieldKind::Password { .. } => {
                let Some(password) = given.first().filter(|p| !p.is_empty()) else {
                    continue;
                };
                raw.insert(
                    "passwordConfirm".into(),
                    Value::String((*password).to_owned()),
                );
                Value::String((*password).to_owned())
            }
            FieldKind::Autodate { .. } => continue,
            FieldKind::Text { primary_key, .. } if *primary_key => {
                match given.first().filter(|id| !id.is_empty()) {
                    Some(id) if !update => Value::String((*id).to_owned()),
                    _ => continue,
                }
            }
            kind if kind.is_multi() => Value::Array(
                given
                    .iter()
                    .filter(|v| !v.is_empty())
                    .map(|v| Value::String((*v).to_owned()))
                    .collect(),
            ),
            FieldKind::Number { .. } | FieldKind::Json { .. } | FieldKind::Date { .. }
                if given.last().is_some_and(|v| v.trim().is_empty()) =>
            {
                if update {
                    Value::Null
                } else {
                    continue;
                }
            }
            _ => Value::String(given.last().copied().unwrap_or_default().to_owned()),
        };
        raw.insert(field.name.clone(), value);
    }
    crate::records::validate::from_form(collection, raw)
}

/// `GET /_/collections/{name}/records/new`
pub async fn new_page(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
) -> HttpResponse {
    let collection = or_page!(collection_of(&state, &admin, &name));
    let inputs = inputs(&state, &admin, &collection, None, &[]).await;
    page(RecordFormPage {
        chrome: admin.chrome(format!("New {} record", collection.name), "collections"),
        collection: collection.name.clone(),
        id: String::new(),
        inputs,
        error: String::new(),
        auth: collection.auth.is_some(),
        token: String::new(),
    })
}

/// The form again with what was typed and why it was refused.
async fn refused(
    state: &AppState,
    admin: &Admin,
    collection: &Collection,
    id: &str,
    typed: &Map<String, Value>,
    err: crate::records::RecordError,
) -> HttpResponse {
    let problem = err.problem();
    let errors = super::problem_errors(&problem);
    let inputs = inputs(state, admin, collection, Some(typed), &errors).await;
    page_with_status(
        crate::http::error::status_of(problem.code),
        RecordFormPage {
            chrome: admin.chrome(collection.name.clone(), "collections"),
            collection: collection.name.clone(),
            id: id.to_owned(),
            inputs,
            error: problem.message,
            auth: collection.auth.is_some(),
            token: String::new(),
        },
    )
}

/// `POST /_/collections/{name}/records/new`
pub async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let collection = or_page!(collection_of(&state, &admin, &name));
    let values = values_of(&collection, &form, false);
    let identity = admin.identity();
    match state
        .records
        .create(
            &collection.name,
            &identity,
            &request("POST", &identity),
            values.clone(),
        )
        .await
    {
        Ok(_) => redirect(&format!(
            "/_/collections/{}/records?done=created",
            urlencode(&collection.name)
        )),
        Err(err) => refused(&state, &admin, &collection, "", &values, err).await,
    }
}

async fn edit_form(
    state: &AppState,
    admin: &Admin,
    collection: &Collection,
    id: &str,
    token: String,
    done: Option<&str>,
) -> HttpResponse {
    let identity = admin.identity();
    match state
        .records
        .view(
            &collection.name,
            id,
            &identity,
            &request("GET", &identity),
            None,
        )
        .await
    {
        Ok((Value::Object(record), _)) => {
            let inputs = inputs(state, admin, collection, Some(&record), &[]).await;
            let mut chrome = admin.chrome(format!("{} {id}", collection.name), "collections");
            chrome.notice = notice(done);
            page(RecordFormPage {
                chrome,
                collection: collection.name.clone(),
                id: id.to_owned(),
                inputs,
                error: String::new(),
                auth: collection.auth.is_some(),
                token,
            })
        }
        _ => admin_message(admin, StatusCode::NOT_FOUND, "Not found", "No such record."),
    }
}

/// `GET /_/collections/{name}/records/{id}`
pub async fn edit_page(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
    done: web::Query<Done>,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    let collection = or_page!(collection_of(&state, &admin, &name));
    edit_form(
        &state,
        &admin,
        &collection,
        &id,
        String::new(),
        done.done.as_deref(),
    )
    .await
}

/// `POST /_/collections/{name}/records/{id}`
pub async fn update(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    let form = or_page!(admin.form(payload).await);
    let collection = or_page!(collection_of(&state, &admin, &name));
    let values = values_of(&collection, &form, true);
    let identity = admin.identity();
    match state
        .records
        .update(
            &collection.name,
            &id,
            &identity,
            &request("PATCH", &identity),
            values.clone(),
            None,
        )
        .await
    {
        Ok(_) => redirect(&format!(
            "/_/collections/{}/records/{}?done=saved",
            urlencode(&collection.name),
            urlencode(&id)
        )),
        Err(err) => {
            let mut typed = values;
            typed.insert("id".into(), Value::String(id.clone()));
            refused(&state, &admin, &collection, &id, &typed, err).await
        }
    }
}

/// `GET /_/collections/{name}/records/{id}/json`
pub async fn json(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    let identity = admin.identity();
    match state
        .records
        .view(&name, &id, &identity, &request("GET", &identity), None)
        .await
    {
        Ok((record, _)) => page(JsonPage {
            chrome: admin.chrome(format!("{name} {id}"), "collections"),
            back: format!(
                "/_/collections/{}/records/{}",
                urlencode(&name),
                urlencode(&id)
            ),
            json: serde_json::to_string_pretty(&record).unwrap_or_default(),
        }),
        Err(_) => admin_message(
            &admin,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such record.",
        ),
    }
}

#[derive(Deserialize)]
pub struct Ids {
    ids: Option<String>,
}

fn confirm_delete(admin: &Admin, collection: &str, ids: &[String], error: String) -> ConfirmPage {
    ConfirmPage {
        chrome: admin.chrome(format!("Delete from {collection}?"), "collections"),
        message: format!(
            "Delete {} record(s) of `{collection}`? This cannot be undone.",
            ids.len()
        ),
        lost: ids.iter().map(|id| format!("record {id}")).collect(),
        action: format!("/_/collections/{}/records/delete", urlencode(collection)),
        cancel: format!("/_/collections/{}/records", urlencode(collection)),
        hidden: ids
            .iter()
            .map(|id| ("ids".to_owned(), id.clone()))
            .chain([("confirmed".to_owned(), "1".to_owned())])
            .collect(),
        type_to_confirm: String::new(),
        button: "Delete".into(),
        error,
    }
}

/// `GET /_/collections/{name}/records/delete?ids=…`: the confirmation.
pub async fn delete_page(
    admin: Admin,
    name: web::Path<String>,
    query: web::Query<Ids>,
) -> HttpResponse {
    let ids: Vec<String> = query
        .ids
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    page(confirm_delete(&admin, &name, &ids, String::new()))
}

/// `POST /_/collections/{name}/records/delete`: the table's selection asks first;
/// the confirmation deletes them, each as the API would.
pub async fn delete(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let ids: Vec<String> = super::values(&form, "ids")
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return redirect(&format!("/_/collections/{}/records", urlencode(&name)));
    }
    if super::value(&form, "confirmed").is_empty() {
        return page(confirm_delete(&admin, &name, &ids, String::new()));
    }
    let identity = admin.identity();
    for id in &ids {
        if let Err(err) = state
            .records
            .delete(&name, id, &identity, &request("DELETE", &identity), None)
            .await
        {
            let message = format!("Record {id}: {}", err.problem().message);
            return page_with_status(
                crate::http::error::status_of(err.problem().code),
                confirm_delete(&admin, &name, &ids, message),
            );
        }
    }
    redirect(&format!(
        "/_/collections/{}/records?done=deleted",
        urlencode(&name)
    ))
}

/// `POST …/{id}/impersonate`: a token for the account, shown once.
pub async fn impersonate(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    or_page!(admin.form(payload).await);
    let collection = or_page!(collection_of(&state, &admin, &name));
    match state
        .auth
        .impersonate(&state.schema.snapshot(), &name, &id, Some(3600))
        .await
    {
        Ok((token, _, _)) => edit_form(&state, &admin, &collection, &id, token, None).await,
        Err(err) => super::failed(&admin, "Impersonation failed", err.problem()),
    }
}

/// `POST …/{id}/revoke`: every session of the account ends.
pub async fn revoke(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    or_page!(admin.form(payload).await);
    match state
        .auth
        .revoke_sessions(&state.schema.snapshot(), &name, &id)
        .await
    {
        Ok(()) => redirect(&format!(
            "/_/collections/{}/records/{}?done=revoked",
            urlencode(&name),
            urlencode(&id)
        )),
        Err(err) => super::failed(&admin, "Revoking failed", err.problem()),
    }
}

/// `POST …/{id}/mail`: send the account a verification or password-reset mail.
pub async fn mail(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    let form = or_page!(admin.form(payload).await);
    let identity = admin.identity();
    let email = match state
        .records
        .view(&name, &id, &identity, &request("GET", &identity), None)
        .await
    {
        Ok((record, _)) => record
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        Err(_) => {
            return admin_message(
                &admin,
                StatusCode::NOT_FOUND,
                "Not found",
                "No such record.",
            );
        }
    };
    let snapshot = state.schema.snapshot();
    let sent = match super::value(&form, "kind") {
        "verification" => state.auth.request_verification(&snapshot, &name, &email),
        _ => state.auth.request_password_reset(&snapshot, &name, &email),
    };
    match sent {
        Ok(()) => redirect(&format!(
            "/_/collections/{}/records/{}?done=mailed",
            urlencode(&name),
            urlencode(&id)
        )),
        Err(err) => super::failed(&admin, "Sending failed", err.problem()),
    }
}
