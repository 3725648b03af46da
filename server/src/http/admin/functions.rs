//! The functions page: the live functions (enable, disable, delete), a deploy form
//! (the component uploaded as a file) and the invocation log with captured logs.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use basalt_admin_ui::{DeliveryRow, FunctionRow, FunctionsPage, InvocationRow};
use futures_util::StreamExt;
use serde_json::Value;

use super::{Admin, Form, page_with_status, redirect, value};
use crate::AppState;

#[derive(serde::Deserialize)]
pub struct Params {
    function: Option<String>,
    done: Option<String>,
}

/// Captured log lines (`[{level, message, fields}]`) as text lines.
fn log_lines(logs: &str) -> Vec<String> {
    let lines: Vec<Value> = serde_json::from_str(logs).unwrap_or_default();
    lines
        .iter()
        .map(|l| {
            let text = |key: &str| l.get(key).and_then(Value::as_str).unwrap_or_default();
            let fields = l.get("fields").map(Value::to_string).unwrap_or_default();
            format!("[{}] {} {fields}", text("level"), text("message"))
        })
        .collect()
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

async fn functions_page(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    filter: Option<&str>,
    error: String,
    done: Option<&str>,
) -> HttpResponse {
    let live = state.functions.live();
    let mut functions: Vec<_> = live.values().collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let functions = functions
        .into_iter()
        .map(|d| FunctionRow {
            name: d.name.clone(),
            version: d.version,
            enabled: d.manifest.enabled,
            triggers: d.manifest.triggers.join(", "),
            exports: [(d.hooks, "hooks"), (d.http, "http"), (d.worker, "triggers")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join(", "),
            limits: serde_json::to_string(&d.manifest.limits).unwrap_or_default(),
            size: size(d.size),
            created: d.created.format("%Y-%m-%d %H:%M:%S").to_string(),
            filter: d.manifest.filter.clone().unwrap_or_default(),
            schedules: crate::functions::FunctionService::next_runs(d)
                .into_iter()
                .zip(&d.manifest.schedules)
                .map(|((cron, next), s)| {
                    let zone = s.timezone.as_deref().unwrap_or("UTC");
                    match next {
                        Some(next) => {
                            format!("{cron} ({zone}) → {}", next.format("%Y-%m-%d %H:%M:%S UTC"))
                        }
                        None => format!("{cron} ({zone}) → never"),
                    }
                })
                .collect(),
            retries: if d
                .triggers
                .iter()
                .any(|t| matches!(t, crate::functions::manifest::Trigger::After { .. }))
            {
                format!(
                    "{} attempts, back-off from {} ms",
                    d.manifest.retries.max_attempts, d.manifest.retries.backoff_ms
                )
            } else {
                String::new()
            },
            outbound: d.manifest.outbound.join(", "),
        })
        .collect();
    let deliveries = state
        .functions
        .deliveries(filter, None, 100)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let record_id = serde_json::from_str::<Value>(&row.payload)
                .ok()
                .and_then(|p| p.get("subject").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            DeliveryRow {
                when: if row.state == "dead" {
                    row.updated.format("%Y-%m-%d %H:%M:%S").to_string()
                } else {
                    row.due.format("%Y-%m-%d %H:%M:%S").to_string()
                },
                id: row.id,
                function: row.function,
                trigger: row.trigger,
                event_id: row.event_id,
                record_id,
                attempts: row.attempts,
                state: row.state,
                error: row.error.unwrap_or_default(),
            }
        })
        .collect();
    let invocations = state
        .functions
        .invocations(filter, 100)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| InvocationRow {
            started: i.started.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            function: i.function,
            version: i64::from(i.version),
            trigger: i.trigger,
            outcome: i.outcome,
            duration: format!("{:.2} ms", i.duration_us as f64 / 1000.0),
            error: i.error.unwrap_or_default(),
            logs: log_lines(&i.logs),
        })
        .collect();
    let mut chrome = admin.chrome("Functions", "functions");
    chrome.notice = super::notice(done);
    page_with_status(
        status,
        FunctionsPage {
            chrome,
            functions,
            invocations,
            deliveries,
            filter: filter.unwrap_or_default().to_owned(),
            error,
        },
    )
}

/// `GET /_/functions[?function=NAME]`
pub async fn list(
    state: web::Data<AppState>,
    admin: Admin,
    params: web::Query<Params>,
) -> HttpResponse {
    functions_page(
        &state,
        &admin,
        StatusCode::OK,
        params.function.as_deref(),
        String::new(),
        params.done.as_deref(),
    )
    .await
}

/// The deploy form: its text fields and the component file.
async fn read_deploy(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Form, Vec<u8>), String> {
    let mut multipart = Multipart::new(req.headers(), payload);
    let mut form = Form::new();
    let mut component = Vec::new();
    let mut total = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| format!("The form could not be read: {e}."))?;
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| format!("The form could not be read: {e}."))?;
            total += chunk.len();
            if total > limit {
                return Err(format!(
                    "The upload is larger than {limit} bytes (setting `functions_max_size`)."
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if name == "component" {
            component = bytes;
        } else {
            form.push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok((form, component))
}

fn manifest(form: &Form) -> Result<crate::functions::Manifest, String> {
    let json = |key: &str| -> Result<Option<Value>, String> {
        let text = value(form, key).trim();
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("`{key}` is not JSON: {e}."))
    };
    let triggers: Vec<String> = value(form, "triggers")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let filter = value(form, "filter").trim();
    let outbound: Vec<&str> = value(form, "outbound")
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    let manifest = serde_json::json!({
        "name": value(form, "name").trim(),
        "triggers": triggers,
        "scopes": json("scopes")?,
        "limits": json("limits")?.unwrap_or_else(|| serde_json::json!({})),
        "filter": (!filter.is_empty()).then_some(filter),
        "retries": json("retries")?.unwrap_or_else(|| serde_json::json!({})),
        "schedules": json("schedules")?.unwrap_or_else(|| serde_json::json!([])),
        "outbound": outbound,
    });
    serde_json::from_value(manifest).map_err(|e| format!("The manifest is not valid: {e}."))
}

/// `POST /_/functions`: deploy from the form.
pub async fn deploy(
    state: web::Data<AppState>,
    admin: Admin,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let refused = |error: String| async {
        functions_page(&state, &admin, StatusCode::BAD_REQUEST, None, error, None).await
    };
    let (form, component) =
        match read_deploy(&req, payload, state.settings.functions_max_size).await {
            Ok(read) => read,
            Err(e) => return refused(e).await,
        };
    if let Err(res) = admin.check_csrf(&form) {
        return *res;
    }
    let manifest = match manifest(&form) {
        Ok(m) => m,
        Err(e) => return refused(e).await,
    };
    match state.functions.deploy(manifest, component).await {
        Ok(_) => redirect("/_/functions?done=deployed"),
        Err(e) => {
            let problem = e.problem();
            let details: Vec<String> = problem
                .fields
                .into_map()
                .into_iter()
                .map(|(field, e)| format!("{field}: {}", e.message))
                .collect();
            refused(if details.is_empty() {
                problem.message
            } else {
                format!("{} {}", problem.message, details.join("; "))
            })
            .await
        }
    }
}

/// `POST /_/functions/{name}/toggle`: enable or disable.
pub async fn toggle(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = match admin.form(payload).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    drop(form);
    let enabled = state
        .functions
        .live()
        .get(name.as_str())
        .is_some_and(|d| d.manifest.enabled);
    let mut patch = serde_json::Map::new();
    patch.insert("enabled".into(), Value::Bool(!enabled));
    match state.functions.change(&name, &patch).await {
        Ok(_) => redirect("/_/functions?done=saved"),
        Err(e) => {
            functions_page(
                &state,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                e.problem().message,
                None,
            )
            .await
        }
    }
}

/// `POST /_/functions/{name}/delete`
pub async fn delete(
    state: web::Data<AppState>,
    admin: Admin,
    name: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(res) = admin.form(payload).await {
        return *res;
    }
    match state.functions.delete(&name).await {
        Ok(()) => redirect("/_/functions?done=deleted"),
        Err(e) => {
            functions_page(
                &state,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                e.problem().message,
                None,
            )
            .await
        }
    }
}

/// The page again with a database failure's message.
async fn db_failed(state: &AppState, admin: &Admin, e: &sea_orm::DbErr) -> HttpResponse {
    functions_page(
        state,
        admin,
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        crate::errors::Problem::from_db(e).message,
        None,
    )
    .await
}

/// `POST /_/functions/deliveries/{id}/replay`: a dead letter gets a fresh set of
/// attempts.
pub async fn replay(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(res) = admin.form(payload).await {
        return *res;
    }
    match state.functions.replay(&id).await {
        Ok(Some(_)) => redirect("/_/functions?done=saved"),
        Ok(None) => {
            functions_page(
                &state,
                &admin,
                StatusCode::NOT_FOUND,
                None,
                "No such dead letter (it may have been replayed already).".into(),
                None,
            )
            .await
        }
        Err(e) => db_failed(&state, &admin, &e).await,
    }
}

/// `POST /_/functions/deliveries/{id}/discard`
pub async fn discard(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(res) = admin.form(payload).await {
        return *res;
    }
    match state.functions.discard(&id).await {
        Ok(_) => redirect("/_/functions?done=deleted"),
        Err(e) => db_failed(&state, &admin, &e).await,
    }
}
