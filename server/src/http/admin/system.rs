//! Events, mails and settings: read-only views over the `events`, `auth` (mails) and
//! configuration services.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use basalt_admin_ui::{
    EventRow, EventsPage, MailPage, MailRow, MailsPage, SettingRow, SettingsPage,
};

use super::{Admin, admin_message, page};
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
