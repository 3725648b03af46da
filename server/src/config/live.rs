//! Settings a superuser may change while the server runs (the admin UI's settings
//! page): the application's name and URL, SMTP, rate limits, the batch limit and the
//! realtime limits. The file, environment and flags give their starting values; what
//! the admin UI saves is stored in `_settings` (key [`KEY`]) and wins over them, on
//! this start and the next. Clearing a value in the admin UI falls back to the
//! configured one.
//!
//! Readers take [`LiveSettings::current`] per use; a save swaps it atomically.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Limit, Settings, parse_limit};
use crate::db::Db;
use crate::validation::FieldErrors;

/// The `_settings` key of the stored values.
pub const KEY: &str = "runtimeSettings";

/// The values in force.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub app_name: String,
    /// Base of links in mails, without a trailing slash.
    pub app_url: String,
    /// `None`: mails are stored in `_mails` instead of sent.
    pub smtp_url: Option<Url>,
    pub mail_from: String,
    pub rate_limit: Option<Limit>,
    pub rate_limit_auth: Option<Limit>,
    pub rate_limit_auth_ip: Option<Limit>,
    pub batch_max_requests: usize,
    pub realtime: crate::realtime::Limits,
}

/// What the admin UI stored: each value as typed, `None` for "as configured".
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Stored {
    pub app_name: Option<String>,
    pub app_url: Option<String>,
    /// `""` turns SMTP off (mails are stored).
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub rate_limit: Option<String>,
    pub rate_limit_auth: Option<String>,
    pub rate_limit_auth_ip: Option<String>,
    pub batch_max_requests: Option<String>,
    pub realtime_max_subscriptions: Option<String>,
    pub realtime_max_connections_per_ip: Option<String>,
}

impl Runtime {
    pub fn from_settings(settings: &Settings) -> Runtime {
        Runtime {
            app_name: settings.app_name.clone(),
            app_url: settings.app_url.clone(),
            smtp_url: settings.smtp_url.clone(),
            mail_from: settings.mail_from.clone(),
            rate_limit: settings.rate_limit,
            rate_limit_auth: settings.rate_limit_auth,
            rate_limit_auth_ip: settings.rate_limit_auth_ip,
            batch_max_requests: settings.batch_max_requests,
            realtime: settings.realtime,
        }
    }

    /// These values with `stored` over them.
    ///
    /// Fails with the field errors of every stored value that is not valid, named as
    /// in [`Stored`] (camelCase).
    pub fn with(&self, stored: &Stored) -> Result<Runtime, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut out = self.clone();
        let given = |v: &Option<String>| v.as_deref().map(str::trim).map(str::to_owned);
        if let Some(name) = given(&stored.app_name) {
            if name.is_empty() || name.len() > 100 {
                errors.add(
                    "appName",
                    "validation_length_out_of_range",
                    "1 to 100 characters.".into(),
                );
            }
            out.app_name = name;
        }
        if let Some(url) = given(&stored.app_url) {
            match Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    out.app_url = url.trim_end_matches('/').to_owned();
                }
                _ => errors.add("appUrl", "validation_invalid_url", "An http(s) URL.".into()),
            }
        }
        if let Some(url) = given(&stored.smtp_url) {
            if url.is_empty() {
                out.smtp_url = None;
            } else {
                match Url::parse(&url) {
                    Ok(parsed) if matches!(parsed.scheme(), "smtp" | "smtps" | "smtp+plain") => {
                        out.smtp_url = Some(parsed);
                    }
                    _ => errors.add(
                        "smtpUrl",
                        "validation_invalid_url",
                        "smtp://, smtps:// or smtp+plain:// with host and port, or empty for none."
                            .into(),
                    ),
                }
            }
        }
        if let Some(from) = given(&stored.mail_from) {
            if from.parse::<lettre::message::Mailbox>().is_err() {
                errors.add(
                    "mailFrom",
                    "validation_invalid_email",
                    "A mailbox such as App <app@example.com>.".into(),
                );
            }
            out.mail_from = from;
        }
        for (key, value, slot) in [
            ("rateLimit", &stored.rate_limit, &mut out.rate_limit),
            (
                "rateLimitAuth",
                &stored.rate_limit_auth,
                &mut out.rate_limit_auth,
            ),
            (
                "rateLimitAuthIp",
                &stored.rate_limit_auth_ip,
                &mut out.rate_limit_auth_ip,
            ),
        ] {
            if let Some(text) = given(value) {
                match parse_limit(&text) {
                    Ok(limit) => *slot = limit,
                    Err(message) => errors.add(key, "validation_invalid_limit", message),
                }
            }
        }
        // The batch limit may be 0 (batches off), as in the configuration.
        for (key, value, slot, least) in [
            (
                "batchMaxRequests",
                &stored.batch_max_requests,
                &mut out.batch_max_requests,
                0,
            ),
            (
                "realtimeMaxSubscriptions",
                &stored.realtime_max_subscriptions,
                &mut out.realtime.max_subscriptions,
                1,
            ),
            (
                "realtimeMaxConnectionsPerIp",
                &stored.realtime_max_connections_per_ip,
                &mut out.realtime.max_connections_per_ip,
                1,
            ),
        ] {
            if let Some(text) = given(value) {
                match text.parse::<usize>() {
                    Ok(n) if (least..=1_000_000).contains(&n) => *slot = n,
                    _ => errors.add(
                        key,
                        "validation_invalid_number",
                        format!("A whole number from {least} to 1000000."),
                    ),
                }
            }
        }
        errors.into_result().map(|()| out)
    }
}

/// The settings in force, and what the admin UI stored. Cheap to share.
#[derive(Debug)]
pub struct LiveSettings {
    configured: Runtime,
    current: ArcSwap<Runtime>,
    stored: ArcSwap<Stored>,
    db: Db,
    /// Bumped by each save through this instance (other instances are told of it).
    saved: tokio::sync::watch::Sender<u64>,
}

impl LiveSettings {
    /// The configured values with the stored ones over them. Stored values that are
    /// no longer valid are ignored with a warning.
    ///
    /// Fails when `_settings` cannot be read.
    pub async fn load(settings: &Settings, db: Db) -> Result<LiveSettings, sea_orm::DbErr> {
        let configured = Runtime::from_settings(settings);
        let raw = db.setting_or_insert(KEY, serde_json::json!({})).await?;
        let stored: Stored = serde_json::from_value(raw).unwrap_or_default();
        let current = match configured.with(&stored) {
            Ok(current) => current,
            Err(errors) => {
                tracing::warn!(
                    fields = ?errors.keys().collect::<Vec<_>>(),
                    "stored settings are not valid; using the configured values"
                );
                configured.clone()
            }
        };
        Ok(LiveSettings {
            configured,
            current: ArcSwap::from_pointee(current),
            stored: ArcSwap::from_pointee(stored),
            db,
            saved: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    pub fn stored(&self) -> Arc<Stored> {
        self.stored.load_full()
    }

    /// The values from the file, environment and flags.
    pub fn configured(&self) -> &Runtime {
        &self.configured
    }

    /// Store `stored` and put it in force.
    ///
    /// Fails with the field errors of invalid values (nothing is stored then), or
    /// when `_settings` cannot be written.
    pub async fn save(&self, stored: Stored) -> Result<Arc<Runtime>, SaveError> {
        let runtime = self.configured.with(&stored).map_err(SaveError::Invalid)?;
        let value = serde_json::to_value(&stored).map_err(|e| SaveError::Db(e.to_string()))?;
        self.db
            .set_setting(KEY, &value)
            .await
            .map_err(|e| SaveError::Db(e.to_string()))?;
        let runtime = Arc::new(runtime);
        self.current.store(Arc::clone(&runtime));
        self.stored.store(Arc::new(stored));
        self.saved.send_modify(|n| *n = n.wrapping_add(1));
        Ok(runtime)
    }

    /// Each save made through this instance, as it lands.
    pub fn saves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.saved.subscribe()
    }
}

impl LiveSettings {
    /// Read the stored values again (another instance saved them) and put them in
    /// force; invalid ones are ignored with a warning, as at start.
    ///
    /// Fails when `_settings` cannot be read.
    pub async fn reload(&self) -> Result<Arc<Runtime>, sea_orm::DbErr> {
        let raw = self
            .db
            .setting_or_insert(KEY, serde_json::json!({}))
            .await?;
        let stored: Stored = serde_json::from_value(raw).unwrap_or_default();
        match self.configured.with(&stored) {
            Ok(runtime) => {
                let runtime = Arc::new(runtime);
                self.current.store(Arc::clone(&runtime));
                self.stored.store(Arc::new(stored));
                Ok(runtime)
            }
            Err(errors) => {
                tracing::warn!(
                    fields = ?errors.keys().collect::<Vec<_>>(),
                    "stored settings are not valid; keeping the current values"
                );
                Ok(self.current())
            }
        }
    }
}

/// Why settings were not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("invalid settings")]
    Invalid(FieldErrors),
    #[error("cannot store the settings: {0}")]
    Db(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Runtime {
        Runtime {
            app_name: "Basalt".into(),
            app_url: "http://127.0.0.1:8090".into(),
            smtp_url: None,
            mail_from: "Basalt <noreply@example.com>".into(),
            rate_limit: None,
            rate_limit_auth: None,
            rate_limit_auth_ip: None,
            batch_max_requests: 50,
            realtime: crate::realtime::Limits {
                max_subscriptions: 1000,
                max_connections_per_ip: 100,
                keepalive: std::time::Duration::from_secs(30),
                idle_timeout: std::time::Duration::from_secs(300),
            },
        }
    }

    #[test]
    fn stored_values_override_and_are_checked() {
        let stored = Stored {
            app_name: Some("My app".into()),
            app_url: Some("https://app.example.com/".into()),
            rate_limit: Some("10/1m".into()),
            batch_max_requests: Some("5".into()),
            ..Stored::default()
        };
        let runtime = base().with(&stored).unwrap();
        assert_eq!(runtime.app_name, "My app");
        assert_eq!(runtime.app_url, "https://app.example.com");
        assert_eq!(runtime.rate_limit.map(|l| l.count), Some(10));
        assert_eq!(runtime.batch_max_requests, 5);
        assert_eq!(
            runtime.realtime.max_subscriptions, 1000,
            "unset: as configured"
        );

        let bad = Stored {
            app_url: Some("ftp://x".into()),
            smtp_url: Some("http://mail".into()),
            mail_from: Some("not a mailbox".into()),
            rate_limit: Some("lots".into()),
            batch_max_requests: Some("-1".into()),
            ..Stored::default()
        };
        let errors = base().with(&bad).unwrap_err();
        let keys: Vec<&str> = errors.keys().collect();
        assert_eq!(
            keys,
            [
                "appUrl",
                "batchMaxRequests",
                "mailFrom",
                "rateLimit",
                "smtpUrl"
            ]
        );
        let off = Stored {
            smtp_url: Some(String::new()),
            ..Stored::default()
        };
        let mut with_smtp = base();
        with_smtp.smtp_url = Url::parse("smtp://mail.example.com:587").ok();
        assert!(with_smtp.with(&off).unwrap().smtp_url.is_none());
    }
}
