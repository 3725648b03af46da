//! Outgoing mail: through SMTP (`smtp_url`, with lettre) when configured, otherwise
//! stored in `_mails`, where superusers read it (`GET /api/mails`) — so a new
//! installation and the tests can follow every link without a mail server.

use std::sync::Arc;

use chrono::Utc;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, QueryOrder, QuerySelect, Set};

use arc_swap::ArcSwapOption;
use url::Url;

use crate::config::live::LiveSettings;
use crate::db::Db;
use crate::db::entities::mails;

/// One mail to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// What it is for: `verification`, `passwordReset`, `emailChange`.
    pub kind: String,
    pub to: String,
    pub subject: String,
    /// HTML.
    pub body: String,
}

/// Sends mail, or keeps it.
#[derive(Clone, Debug)]
pub struct Mailer {
    db: Db,
    live: Arc<LiveSettings>,
    /// The SMTP transport of the settings in force, kept with the settings it was
    /// built from (`smtp_url`, `mail_from`) and rebuilt when they change.
    smtp: Arc<ArcSwapOption<(String, Arc<Smtp>)>>,
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The SMTP transport for `url` sending as `from`.
fn smtp(url: &Url, from: &str) -> Result<Smtp, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("`mail_from` is not a mailbox ({e})"))?;
    // smtp:// upgrades with STARTTLS (required), smtps:// is TLS from the first byte,
    // smtp+plain:// is unencrypted (local relays, tests).
    let mut url = url.clone();
    let plain = url.scheme() == "smtp+plain";
    let text = if plain {
        url.as_str().replacen("smtp+plain://", "smtp://", 1)
    } else {
        if url.scheme() == "smtp" && !url.query_pairs().any(|(k, _)| k == "tls") {
            url.query_pairs_mut().append_pair("tls", "required");
        }
        url.to_string()
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&text)
        .map_err(|e| format!("`smtp_url` is unusable ({e})"))?
        .timeout(Some(std::time::Duration::from_secs(20)))
        .build();
    Ok(Smtp { transport, from })
}

impl Mailer {
    /// From the settings in force: SMTP when `smtp_url` is set, else `_mails`.
    ///
    /// Fails with a message naming the setting when `smtp_url` or `mail_from` is
    /// unusable.
    pub fn new(live: Arc<LiveSettings>, db: Db) -> Result<Mailer, String> {
        let mailer = Mailer {
            db,
            live,
            smtp: Arc::new(ArcSwapOption::empty()),
        };
        mailer.transport()?;
        Ok(mailer)
    }

    /// The SMTP transport of the settings in force (`None`: mails are stored).
    fn transport(&self) -> Result<Option<Arc<Smtp>>, String> {
        let runtime = self.live.current();
        let Some(url) = &runtime.smtp_url else {
            return Ok(None);
        };
        let key = format!("{url}\n{}", runtime.mail_from);
        if let Some(kept) = self.smtp.load_full()
            && kept.0 == key
        {
            return Ok(Some(Arc::clone(&kept.1)));
        }
        let built = Arc::new(smtp(url, &runtime.mail_from)?);
        self.smtp.store(Some(Arc::new((key, Arc::clone(&built)))));
        Ok(Some(built))
    }

    /// Whether mails are stored rather than sent.
    pub fn stores(&self) -> bool {
        self.live.current().smtp_url.is_none()
    }

    /// Send `mail`, or store it.
    ///
    /// Fails when the SMTP server refuses it or `_mails` cannot be written.
    #[tracing::instrument(skip_all, fields(kind = %mail.kind))]
    pub async fn send(&self, mail: Mail) -> Result<(), String> {
        let Some(smtp) = self.transport()? else {
            let row = mails::ActiveModel {
                id: Set(uuid::Uuid::now_v7().simple().to_string()),
                kind: Set(mail.kind),
                recipient: Set(mail.to),
                subject: Set(mail.subject),
                body: Set(mail.body),
                created: Set(Utc::now()),
            };
            row.insert(self.db.conn())
                .await
                .map_err(|e| format!("cannot store the mail: {e}"))?;
            return Ok(());
        };
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("bad recipient ({e})"))?;
        let message = Message::builder()
            .from(smtp.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_HTML)
            .body(mail.body)
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        smtp.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }

    /// One stored mail.
    ///
    /// Fails when `_mails` cannot be read.
    pub async fn stored_one(&self, id: &str) -> Result<Option<mails::Model>, sea_orm::DbErr> {
        mails::Entity::find_by_id(id.to_owned())
            .one(self.db.conn())
            .await
    }

    /// Stored mails, newest first, and how many there are.
    ///
    /// Fails when `_mails` cannot be read.
    pub async fn stored(
        &self,
        page: u64,
        per_page: u64,
    ) -> Result<(Vec<mails::Model>, u64), sea_orm::DbErr> {
        let total = mails::Entity::find().count(self.db.conn()).await?;
        let items = mails::Entity::find()
            .order_by_desc(mails::Column::Created)
            .order_by_desc(mails::Column::Id)
            // PostgreSQL's OFFSET is a signed 64-bit number.
            .offset(Ord::min(
                page.saturating_sub(1).saturating_mul(per_page),
                i64::MAX as u64,
            ))
            .limit(per_page)
            .all(self.db.conn())
            .await?;
        Ok((items, total))
    }
}

/// Fill a template's `{APP_NAME}`, `{APP_URL}`, `{TOKEN}` and `{RECORD:field}`.
pub fn render(
    template: &str,
    app_name: &str,
    app_url: &str,
    token: &str,
    record: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut out = template
        .replace("{APP_NAME}", app_name)
        .replace("{APP_URL}", app_url)
        .replace("{TOKEN}", token);
    while let Some(start) = out.find("{RECORD:") {
        let Some(len) = out.get(start..).and_then(|rest| rest.find('}')) else {
            break;
        };
        let name = out
            .get(start + 8..start + len)
            .unwrap_or_default()
            .to_owned();
        let value = match record.get(&name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        out.replace_range(start..=start + len, &escape(&value));
    }
    out
}

/// HTML-escape a value placed into a mail body.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::render;

    #[test]
    fn templates_fill_placeholders() {
        let record = json!({"email": "a@b.co", "name": "<Ann>", "n": 3});
        let record = record.as_object().unwrap();
        assert_eq!(
            render(
                "{APP_NAME} {APP_URL}/x/{TOKEN} {RECORD:name} {RECORD:n} {RECORD:none}.",
                "App",
                "https://a.io",
                "t.k.n",
                record
            ),
            "App https://a.io/x/t.k.n &lt;Ann&gt; 3 ."
        );
        assert_eq!(
            render("{RECORD:unclosed", "", "", "", record),
            "{RECORD:unclosed"
        );
    }
}
