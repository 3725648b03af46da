//! The record API, PocketBase-shaped. Handlers extract, call one `records` method and
//! shape the response; rules and filters are the service's business.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::identity::Caller;
use crate::AppState;
use crate::filter::compile::Request;
use crate::records::read::{ListQuery, pick_fields, request_auth};

/// What the filter language may read of this HTTP request.
fn filter_request(req: &HttpRequest, caller: &Caller, query: &HashMap<String, String>) -> Request {
    let mut request = Request::new(req.method().as_str());
    request.auth = request_auth(&caller.0);
    request.query = query.clone();
    request.headers = rule_headers(req);
    request
}

/// Request headers as rules see them (`@request.headers.*`): lower-case names.
pub(super) fn rule_headers(req: &HttpRequest) -> HashMap<String, String> {
    req.headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_ascii_lowercase(),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect()
}

/// The `If-Match` header, if any.
fn if_match(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    page: Option<u64>,
    per_page: Option<u64>,
    sort: Option<String>,
    filter: Option<String>,
    skip_total: Option<String>,
    fields: Option<String>,
    expand: Option<String>,
}

/// `GET /api/collections/{collection}/records`
pub async fn list_records(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    params: web::Query<ListParams>,
    raw: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let request = filter_request(&req, &caller, &raw);
    let query = ListQuery {
        page: params.page,
        per_page: params.per_page,
        sort: params.sort.clone(),
        filter: params.filter.clone(),
        skip_total: matches!(params.skip_total.as_deref(), Some("1" | "true")),
        expand: params.expand.clone(),
        condition: None,
    };
    let page = state
        .records
        .list(&path, &caller.0, &request, &query)
        .await?;
    let fields = params.fields.as_deref();
    Ok(HttpResponse::Ok().json(json!({
        "page": page.page,
        "perPage": page.per_page,
        "totalItems": page.total_items,
        "totalPages": page.total_pages,
        "items": page.items.into_iter().map(|item| pick_fields(item, fields)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct ViewParams {
    fields: Option<String>,
    expand: Option<String>,
}

/// `GET /api/collections/{collection}/records/{id}`
pub async fn view_record(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<ViewParams>,
    raw: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let request = filter_request(&req, &caller, &raw);
    let (record, tag) = state
        .records
        .view(
            &collection,
            &id,
            &caller.0,
            &request,
            params.expand.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, tag))
        .json(pick_fields(record, params.fields.as_deref())))
}

/// `POST /api/collections/{collection}/records` (JSON).
pub async fn create_record(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    raw: web::Query<HashMap<String, String>>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::body::read(&req, payload).await?;
    let snapshot = state.schema.snapshot();
    let mut values = match snapshot.get(&path) {
        Some(collection) => crate::records::validate::from_form(collection, body.form),
        None => body.form,
    };
    values.extend(body.json);
    let request = filter_request(&req, &caller, &raw);
    let record = state
        .records
        .create(&path, &caller.0, &request, values)
        .await?;
    Ok(match record {
        Some(record) => {
            HttpResponse::Ok().json(pick_fields(record, raw.get("fields").map(String::as_str)))
        }
        // Created, but the view rule hides it from its creator.
        None => HttpResponse::NoContent().finish(),
    })
}

/// `PATCH /api/collections/{collection}/records/{id}` (JSON).
pub async fn update_record(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    raw: web::Query<HashMap<String, String>>,
    body: web::Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let request = filter_request(&req, &caller, &raw);
    let (record, tag) = state
        .records
        .update(
            &collection,
            &id,
            &caller.0,
            &request,
            body.into_inner(),
            if_match(&req).as_deref(),
        )
        .await?;
    Ok(match record {
        Some(record) => HttpResponse::Ok()
            .insert_header((actix_web::http::header::ETAG, tag))
            .json(pick_fields(record, raw.get("fields").map(String::as_str))),
        // Updated, but the view rule hides it from the caller.
        None => HttpResponse::NoContent().finish(),
    })
}

/// `DELETE /api/collections/{collection}/records/{id}` → 204.
pub async fn delete_record(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    raw: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let request = filter_request(&req, &caller, &raw);
    state
        .records
        .delete(
            &collection,
            &id,
            &caller.0,
            &request,
            if_match(&req).as_deref(),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    requests: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    method: String,
    url: String,
    #[serde(default)]
    body: serde_json::Map<String, serde_json::Value>,
}

/// `POST /api/batch`: every request in one transaction, PocketBase-shaped.
pub async fn batch(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use crate::records::batch::{BatchError, BatchRequest};
    let object = super::body::object(&req, payload).await?;
    let body: BatchBody = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ApiError::bad_request(format!("The batch has the wrong shape: {e}.")))?;
    let request = filter_request(&req, &caller, &HashMap::new());
    let requests = body
        .requests
        .into_iter()
        .map(|item| BatchRequest {
            method: item.method,
            url: item.url,
            body: item.body,
        })
        .collect();
    let max = state.live.current().batch_max_requests;
    match state
        .records
        .batch(&caller.0, &request, requests, max)
        .await
    {
        Ok(responses) => Ok(HttpResponse::Ok().json(
            responses
                .into_iter()
                .map(|(status, body)| json!({"status": status, "body": body}))
                .collect::<Vec<_>>(),
        )),
        Err(BatchError::TooMany { max: 0 }) => Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "Batch requests are turned off.",
        )),
        Err(BatchError::TooMany { max }) => Err(ApiError::bad_request(format!(
            "A batch holds 1 to {max} requests."
        ))),
        Err(BatchError::Failed { index, error }) => {
            let inner = ApiError::from(error);
            let mut err = ApiError::bad_request("Batch transaction failed.").with_field(
                format!("requests.{index}"),
                "batch_request_failed",
                &format!("{} {}", inner.status.as_u16(), inner.message),
            );
            // The failed request's own code names what went wrong.
            err.code = inner.code;
            for (path, problem) in inner.data {
                err = err.with_field(
                    format!("requests.{index}.{path}"),
                    &problem.code,
                    &problem.message,
                );
            }
            Err(err)
        }
    }
}
