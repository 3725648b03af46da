//! Events, mails, settings, API keys and the schema history: views over the `events`,
//! `auth` (mails, keys), `schema` and configuration services.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use basalt_admin_ui::{
    EventRow, EventsPage, HistoryPage, HistoryRow, InstanceRow, InstancesPage, KeyRow, KeysPage,
    MailPage, MailRow, MailsPage, SettingInput, SettingRow, SettingsPage,
};
use url::Url;

use crate::config::live::{Runtime, SaveError, Stored};

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

/// `GET /_/instances`: the live instances of this installation, by their heartbeats.
pub async fn instances(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let now = chrono::Utc::now();
    let cache_ok = state.cache.ping().await.is_ok();
    let instances = state
        .cluster
        .instances()
        .await
        .into_iter()
        .map(|i| InstanceRow {
            this: i.id == state.cache.instance(),
            uptime: age(now - i.started),
            heartbeat: format!("{} ago", age(now - i.heartbeat)),
            id: i.id,
            version: i.version,
            address: i.address,
        })
        .collect();
    page(InstancesPage {
        chrome: admin.chrome("Instances", "instances"),
        cache: state.cache.external_name().unwrap_or("memory").to_owned(),
        cache_ok,
        instances,
    })
}

/// `GET /_/mails`
pub async fn mails(state: web::Data<AppState>, admin: Admin) -> HttpResponse {
    let (items, _) = state.auth.mails(1, 200).await.unwrap_or_default();
    page(MailsPage {
        chrome: admin.chrome("Mails", "mails"),
        stores: state.live.current().smtp_url.is_none(),
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

/// The changeable settings: form key, label, stored value, configured value.
fn setting_inputs(
    stored: &Stored,
    configured: &Runtime,
    errors: &[(String, String)],
) -> Vec<SettingInput> {
    let limit = |l: Option<crate::config::Limit>| {
        l.map_or_else(
            || "off".to_owned(),
            |l| format!("{}/{}s", l.count, l.window.as_secs()),
        )
    };
    let smtp = configured
        .smtp_url
        .as_ref()
        .map_or_else(|| "off (mails stored)".to_owned(), crate::config::redact);
    let rows: [(&str, &str, &Option<String>, String); 10] = [
        (
            "appName",
            "Application name",
            &stored.app_name,
            configured.app_name.clone(),
        ),
        (
            "appUrl",
            "Application URL (links in mails)",
            &stored.app_url,
            configured.app_url.clone(),
        ),
        (
            "smtpUrl",
            "SMTP server URL (empty: store mails)",
            &stored.smtp_url,
            smtp,
        ),
        (
            "mailFrom",
            "Mails from",
            &stored.mail_from,
            configured.mail_from.clone(),
        ),
        (
            "rateLimit",
            "Requests per address (N/WINDOW, 0 for off)",
            &stored.rate_limit,
            limit(configured.rate_limit),
        ),
        (
            "rateLimitAuth",
            "Sign-in attempts per identity and address",
            &stored.rate_limit_auth,
            limit(configured.rate_limit_auth),
        ),
        (
            "rateLimitAuthIp",
            "Auth requests per address",
            &stored.rate_limit_auth_ip,
            limit(configured.rate_limit_auth_ip),
        ),
        (
            "batchMaxRequests",
            "Requests per batch",
            &stored.batch_max_requests,
            configured.batch_max_requests.to_string(),
        ),
        (
            "realtimeMaxSubscriptions",
            "Realtime subscriptions per connection",
            &stored.realtime_max_subscriptions,
            configured.realtime.max_subscriptions.to_string(),
        ),
        (
            "realtimeMaxConnectionsPerIp",
            "Realtime connections per address",
            &stored.realtime_max_connections_per_ip,
            configured.realtime.max_connections_per_ip.to_string(),
        ),
    ];
    rows.into_iter()
        .map(|(key, label, value, configured)| SettingInput {
            key: key.to_owned(),
            label: label.to_owned(),
            // A stored SMTP URL may hold a password: show it redacted.
            value: match (key, value) {
                ("smtpUrl", Some(url)) => {
                    Url::parse(url).map_or_else(|_| url.clone(), |u| crate::config::redact(&u))
                }
                (_, value) => value.clone().unwrap_or_default(),
            },
            configured,
            error: errors
                .iter()
                .filter(|(path, _)| path == key)
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

fn settings_page(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    stored: &Stored,
    errors: Vec<(String, String)>,
    error: String,
    done: Option<&str>,
) -> HttpResponse {
    let s = &state.settings;
    let rows = [
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
                .map_or("off (in-process events)".into(), crate::config::redact),
        ),
        ("body_limit", format!("{} bytes", s.body_limit)),
        ("outbox_retention", format!("{:?}", s.outbox_retention)),
        ("sqlite_synchronous", format!("{:?}", s.sqlite_synchronous)),
        ("realtime_keepalive", format!("{:?}", s.realtime.keepalive)),
        (
            "realtime_idle_timeout",
            format!("{:?}", s.realtime.idle_timeout),
        ),
    ]
    .into_iter()
    .map(|(key, value)| SettingRow {
        key: key.to_owned(),
        value,
    })
    .collect();
    let mut chrome = admin.chrome("Settings", "settings");
    chrome.notice = super::notice(done);
    page_with_status(
        status,
        SettingsPage {
            chrome,
            inputs: setting_inputs(stored, state.live.configured(), &errors),
            rows,
            test_to: admin.0.email().to_owned(),
            error,
        },
    )
}

/// `GET /_/settings`
pub async fn settings(
    state: web::Data<AppState>,
    admin: Admin,
    done: web::Query<super::Done>,
) -> HttpResponse {
    let stored = state.live.stored();
    settings_page(
        &state,
        &admin,
        StatusCode::OK,
        &stored,
        Vec::new(),
        String::new(),
        done.done.as_deref(),
    )
}

/// `POST /_/settings`: store the values and put them in force at once (rate
/// limits, batch and realtime limits, mail settings, links in mails).
pub async fn save_settings(
    state: web::Data<AppState>,
    admin: Admin,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let previous = state.live.stored();
    let given = |key: &str| {
        let text = super::value(&form, key).trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    let smtp_url = match given("smtpUrl") {
        // The page shows a stored URL redacted: sent back unchanged, keep it.
        Some(url)
            if previous
                .smtp_url
                .as_deref()
                .is_some_and(|p| Url::parse(p).is_ok_and(|u| crate::config::redact(&u) == url)) =>
        {
            previous.smtp_url.clone()
        }
        other => other,
    };
    let stored = Stored {
        app_name: given("appName"),
        app_url: given("appUrl"),
        smtp_url,
        mail_from: given("mailFrom"),
        rate_limit: given("rateLimit"),
        rate_limit_auth: given("rateLimitAuth"),
        rate_limit_auth_ip: given("rateLimitAuthIp"),
        batch_max_requests: given("batchMaxRequests"),
        realtime_max_subscriptions: given("realtimeMaxSubscriptions"),
        realtime_max_connections_per_ip: given("realtimeMaxConnectionsPerIp"),
    };
    match state.live.save(stored.clone()).await {
        Ok(runtime) => {
            state.realtime.set_limits(runtime.realtime);
            super::redirect("/_/settings?done=saved")
        }
        Err(SaveError::Invalid(errors)) => {
            let errors = super::field_errors(&errors);
            settings_page(
                &state,
                &admin,
                StatusCode::BAD_REQUEST,
                &stored,
                errors,
                "The settings were not saved: fix the marked values.".into(),
                None,
            )
        }
        Err(SaveError::Db(message)) => {
            tracing::error!(error = %message, "saving settings failed");
            settings_page(
                &state,
                &admin,
                StatusCode::INTERNAL_SERVER_ERROR,
                &stored,
                Vec::new(),
                "The settings could not be stored.".into(),
                None,
            )
        }
    }
}

/// `POST /_/settings/test-mail`
pub async fn test_mail(
    state: web::Data<AppState>,
    admin: Admin,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(admin.form(payload).await);
    let to = super::value(&form, "to").trim().to_owned();
    match state.auth.send_test_mail(&to).await {
        Ok(()) => super::redirect("/_/settings?done=mailed"),
        Err(err) => settings_page(
            &state,
            &admin,
            StatusCode::BAD_GATEWAY,
            &state.live.stored(),
            Vec::new(),
            format!("The test mail was not sent: {err}"),
            None,
        ),
    }
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
    let form = or_page!(admin.form(payload).await);
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
    or_page!(admin.form(payload).await);
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
