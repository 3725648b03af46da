//! Events, mails, settings, API keys and the schema history: views over the `events`,
//! `auth` (mails, keys), `schema` and configuration services.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use basalt_admin_ui::{
    EventRow, EventsPage, HistoryPage, HistoryRow, KeyRow, KeysPage, MailPage, MailRow, MailsPage,
    SettingRow, SettingsPage,
};

use super::{Admin, admin_message, page, page_with_status};
use crate::AppState;

/// Show a duration as "3 s", "5 min", "2 h".
fn age(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

/// `GET /_/events`: the outbox backlog, its oldest unsent event, the broker, and
/// the latest events as CloudEvents.
pub async fn events(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let backlog = state.events.backlog().await;
    let oldest = state
        .events
        .oldest_unsent()
        .await
        .map_or_else(|| "none".to_owned(), age);
    let broker_ok = state.broker.ping().await.is_ok();
    let broker = state
        .broker
        .external_name()
        .unwrap_or("in-process")
        .to_owned();
    let events = state
        .events
        .latest(50)
        .await
        .into_iter()
        .map(|row| EventRow {
            id: row.id,
            kind: format!("{}.{}", row.collection, row.action),
            collection: row.collection,
            created: row.created.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
            sent: row.sent.is_some(),
            json: serde_json::from_str::<serde_json::Value>(&row.payload)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(row.payload),
        })
        .collect();
    page(EventsPage {
        chrome: admin.chrome("Events", "events"),
        backlog,
        oldest,
        broker,
        broker_ok,
        events,
    })
}

/// `GET /_/mails`
pub async fn mails(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let (items, _) = state.auth.mails(1, 200).await.unwrap_or_default();
    page(MailsPage {
        chrome: admin.chrome("Mails", "mails"),
        stores: state.settings.smtp_url.is_none(),
        mails: items
            .into_iter()
            .map(|m| MailRow {
                id: m.id,
                to: m.recipient,
                subject: m.subject,
                created: m.created.format("%Y-%m-%d %H:%M:%S").to_string(),
            })
            .collect(),
    })
}

/// `GET /_/mails/{id}`
pub async fn mail(state: web::Data<AppState>, admin: Admin, id: web::Path<String>) -> HttpResponse {
    match state.auth.stored_mail(&id).await {
        Ok(Some(m)) => page(MailPage {
            chrome: admin.chrome(m.subject.clone(), "mails"),
            to: m.recipient,
            subject: m.subject,
            created: m.created.format("%Y-%m-%d %H:%M:%S").to_string(),
            body: m.body,
        }),
        _ => admin_message(&admin, StatusCode::NOT_FOUND, "Not found", "No such mail."),
    }
}

/// `GET /_/settings`: what the server runs with, secrets left out.
pub async fn settings(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let s = &state.settings;
    let limit =
        |l: Option<crate::config::Limit>| l.map_or_else(|| "off".to_owned(), |l| format!("{l:?}"));
    let rows = [
        ("app_name", s.app_name.clone()),
        ("app_url", s.app_url.clone()),
        ("http", s.http.clone()),
        ("database_url", s.database.redacted()),
        (
            "redis_url",
            s.redis_url
                .as_ref()
                .map_or("off (in-memory cache)".into(), crate::config::redact),
        ),
        (
            "amqp_url",
            s.amqp_url
                .as_ref()
                .map_or("off (in-process events)".into(), |u| {
                    crate::config::redact(u)
                }),
        ),
        (
            "smtp_url",
            s.smtp_url
                .as_ref()
                .map_or("off (mails stored)".into(), crate::config::redact),
        ),
        ("mail_from", s.mail_from.clone()),
        ("rate_limit", limit(s.rate_limit)),
        ("rate_limit_auth", limit(s.rate_limit_auth)),
        ("rate_limit_auth_ip", limit(s.rate_limit_auth_ip)),
        ("body_limit", format!("{} bytes", s.body_limit)),
        ("batch_max_requests", s.batch_max_requests.to_string()),
        ("outbox_retention", format!("{:?}", s.outbox_retention)),
        ("sqlite_synchronous", format!("{:?}", s.sqlite_synchronous)),
        ("realtime", format!("{:?}", s.realtime)),
    ]
    .into_iter()
    .map(|(key, value)| SettingRow {
        key: key.to_owned(),
        value,
    })
    .collect();
    page(SettingsPage {
        chrome: admin.chrome("Settings", "settings"),
        rows,
    })
}

fn key_rows(keys: Vec<crate::db::entities::api_keys::Model>) -> Vec<KeyRow> {
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    keys.into_iter()
        .map(|k| KeyRow {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            created: time(k.created),
            last_used: k.last_used.map_or_else(|| "never".to_owned(), time),
            expires: k.expires.map_or_else(|| "never".to_owned(), time),
            revoked: k.revoked.is_some(),
        })
        .collect()
}

async fn keys_page(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    secret: String,
    typed: (&str, &str, &str),
    errors: Vec<(String, String)>,
    done: Option<&str>,
) -> HttpResponse {
    let keys = state.auth.keys.list().await.unwrap_or_default();
    let mut chrome = admin.chrome("API keys", "keys");
    chrome.notice = super::notice(done);
    page_with_status(
        status,
        KeysPage {
            chrome,
            keys: key_rows(keys),
            secret,
            name: typed.0.to_owned(),
            scopes: typed.1.to_owned(),
            expires: typed.2.to_owned(),
            errors,
        },
    )
}

/// `GET /_/keys`
pub async fn keys(
    state: web::Data<AppState>,
    admin: Admin,
    done: web::Query<super::Done>,
) -> HttpResponse {
    keys_page(
        &state,
        &admin,
        StatusCode::OK,
        String::new(),
        ("", "\"superuser\"", ""),
        Vec::new(),
        done.done.as_deref(),
    )
    .await
}

/// `POST /_/keys`: create; the secret is shown on this answer only.
pub async fn create_key(
    state: web::Data<AppState>,
    admin: Admin,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(super::read_form(payload).await);
    or_page!(admin.check_csrf(&form));
    let (name, scopes, expires) = (
        super::value(&form, "name"),
        super::value(&form, "scopes"),
        super::value(&form, "expires"),
    );
    let scopes_json = match serde_json::from_str::<serde_json::Value>(scopes) {
        Ok(value) => value,
        Err(_) => {
            return keys_page(
                &state,
                &admin,
                StatusCode::BAD_REQUEST,
                String::new(),
                (name, scopes, expires),
                vec![("scopes".into(), "Scopes must be JSON.".into())],
                None,
            )
            .await;
        }
    };
    let mut body = serde_json::json!({"name": name, "scopes": scopes_json});
    if !expires.trim().is_empty()
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "expires".into(),
            serde_json::Value::String(expires.trim().into()),
        );
    }
    match state
        .auth
        .keys
        .create(&state.schema.snapshot(), &body)
        .await
    {
        Ok((_, secret)) => {
            keys_page(
                &state,
                &admin,
                StatusCode::OK,
                secret,
                ("", "\"superuser\"", ""),
                Vec::new(),
                Some("created"),
            )
            .await
        }
        Err(err) => {
            let problem = err.problem();
            keys_page(
                &state,
                &admin,
                crate::http::error::status_of(problem.code),
                String::new(),
                (name, scopes, expires),
                super::problem_errors(&problem),
                None,
            )
            .await
        }
    }
}

/// `POST /_/keys/{id}/revoke`
pub async fn revoke_key(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(super::read_form(payload).await);
    or_page!(admin.check_csrf(&form));
    match state.auth.keys.revoke(&id).await {
        Ok(true) => super::redirect("/_/keys?done=revoked-key"),
        Ok(false) => admin_message(&admin, StatusCode::NOT_FOUND, "Not found", "No such key."),
        Err(err) => admin_message(
            &admin,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Revoking failed",
            &err.problem().message,
        ),
    }
}

/// `GET /_/schema/history`: the latest schema changes with their before/after.
pub async fn history(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let rows = state
        .schema
        .history(None, 200)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|h| HistoryRow {
            created: h.created.format("%Y-%m-%d %H:%M:%S").to_string(),
            collection: h.collection_name,
            action: h.action,
            actor: h.actor.unwrap_or_else(|| "unknown".into()),
            diff: serde_json::from_str::<serde_json::Value>(&h.diff)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(h.diff),
        })
        .collect();
    page(HistoryPage {
        chrome: admin.chrome("Schema history", "collections"),
        rows,
    })
}
