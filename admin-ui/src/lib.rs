//! Basalt's admin web UI, served at `/_/` by the binary itself: askama templates, CSS,
//! a small hand-written script and the view models that feed them. No npm at build or
//! run time.
//!
//! This crate knows nothing of the server: the server's admin module calls its services
//! and fills these view models. Every value rendered is HTML-escaped by askama.

pub use askama::Template;

pub mod assets;

/// The GraphQL explorer (`GET /graphql` in a browser): standalone, no session.
#[derive(Template, Debug)]
#[template(path = "explorer.html")]
pub struct Explorer {
    pub css: &'static str,
    pub js: &'static str,
    /// The operation the editor starts with.
    pub sample: String,
}

impl Default for Explorer {
    fn default() -> Self {
        Explorer {
            css: assets::CSS.url,
            js: assets::EXPLORER_JS.url,
            sample: "query {\n  schemaVersion\n}\n".to_owned(),
        }
    }
}

/// What every signed-in page shows around its content.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub title: String,
    /// The signed-in superuser's email; empty on the sign-in and setup pages.
    pub user: String,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// The navigation entry of this page (`collections`, `events`, `mails`, ...).
    pub section: &'static str,
    /// A one-line confirmation of what the last action did.
    pub notice: Option<String>,
}

impl Chrome {
    pub fn css(&self) -> &'static str {
        assets::CSS.url
    }
    pub fn js(&self) -> &'static str {
        assets::JS.url
    }
    /// `aria-current` and the highlight for the current navigation entry.
    pub fn nav(&self, section: &str) -> &'static str {
        if self.section == section {
            "active"
        } else {
            ""
        }
    }
}

/// Sign-in.
#[derive(Template, Debug)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub email: String,
    pub error: Option<String>,
    /// Where to go once signed in.
    pub next: String,
}

/// First run: create the first superuser.
#[derive(Template, Debug)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub chrome: Chrome,
    pub token: String,
    /// False once the link was used or expired.
    pub open: bool,
    pub email: String,
    pub errors: Vec<(String, String)>,
}

impl SetupPage {
    pub fn error(&self, field: &str) -> String {
        error_of(&self.errors, field)
    }
}

/// A short page with a message and a way on.
#[derive(Template, Debug)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub message: String,
    pub link: String,
    pub link_text: String,
}

/// One collection in the list.
#[derive(Debug, Clone)]
pub struct CollectionRow {
    pub name: String,
    pub kind: String,
    pub records: u64,
    pub system: bool,
}

/// The collections list.
#[derive(Template, Debug)]
#[template(path = "collections.html")]
pub struct CollectionsPage {
    pub chrome: Chrome,
    pub q: String,
    pub rows: Vec<CollectionRow>,
}

/// A field's row in the collection editor.
#[derive(Debug, Clone, Default)]
pub struct FieldRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub hidden: bool,
    /// The field's other options as JSON (`{"maxSelect": 1, ...}`).
    pub options: String,
    pub system: bool,
}

/// A rule's textarea in the collection editor.
#[derive(Debug, Clone)]
pub struct RuleRow {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
    /// `null`: superusers only.
    pub locked: bool,
    pub error: String,
}

/// Create or edit a collection.
#[derive(Template, Debug)]
#[template(path = "collection_form.html")]
pub struct CollectionFormPage {
    pub chrome: Chrome,
    /// Empty for a new collection.
    pub original: String,
    pub name: String,
    pub kind: String,
    pub system: bool,
    pub fields: Vec<FieldRow>,
    pub kinds: Vec<&'static str>,
    pub rules: Vec<RuleRow>,
    /// One index per line.
    pub indexes: String,
    /// Auth collections: their auth options as JSON (token durations, mail
    /// templates, OAuth2 providers, ...).
    pub auth_options: Option<String>,
    pub errors: Vec<(String, String)>,
    /// The collection as JSON (`GET /api/collections/{name}`), for reference.
    pub json: String,
}

impl CollectionFormPage {
    pub fn error(&self, field: &str) -> String {
        error_of(&self.errors, field)
    }
    /// Errors not shown beside an input.
    pub fn other_errors(&self) -> Vec<String> {
        self.errors
            .iter()
            .filter(|(path, _)| {
                !(path == "name"
                    || path.starts_with("fields.")
                    || path == "indexes"
                    || path.ends_with("Rule"))
            })
            .map(|(path, message)| format!("{path}: {message}"))
            .collect()
    }
    pub fn field_error(&self, index: &usize) -> String {
        let prefix = format!("fields.{index}.");
        self.errors
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix) || path == &format!("fields.{index}"))
            .map(|(path, message)| format!("{}: {message}", path.trim_start_matches(&prefix)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Confirm a destructive action, naming what will be lost.
#[derive(Template, Debug)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub message: String,
    pub lost: Vec<String>,
    pub action: String,
    pub cancel: String,
    /// Hidden inputs the form posts back.
    pub hidden: Vec<(String, String)>,
    /// When set, the user must type this word to confirm.
    pub type_to_confirm: String,
    pub button: String,
    pub error: String,
}

/// A column of the records table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub shown: bool,
    /// The link that sorts by this column (toggling the direction).
    pub sort_link: String,
    /// `▲`, `▼` or nothing.
    pub sorted: &'static str,
}

/// A record's row in the table.
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub id: String,
    pub cells: Vec<String>,
}

/// Browse a collection's records.
#[derive(Template, Debug)]
#[template(path = "records.html")]
pub struct RecordsPage {
    pub chrome: Chrome,
    pub collection: String,
    pub filter: String,
    pub sort: String,
    pub page: u64,
    pub per_page: u64,
    pub total: i64,
    pub pages: i64,
    pub columns: Vec<Column>,
    pub rows: Vec<RecordRow>,
    pub error: String,
    pub prev: String,
    pub next: String,
}

impl RecordsPage {
    pub fn shown(&self) -> Vec<&Column> {
        self.columns.iter().filter(|c| c.shown).collect()
    }
}

/// One `<option>`.
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One input of a record form.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    /// `text`, `textarea`, `number`, `bool`, `email`, `url`, `date`, `select`, `json`,
    /// `password`, `relation`, `file`, `readonly`.
    pub kind: &'static str,
    pub value: String,
    pub checked: bool,
    pub choices: Vec<Choice>,
    pub multiple: bool,
    pub required: bool,
    pub help: String,
    pub error: String,
}

/// Create or edit a record.
#[derive(Template, Debug)]
#[template(path = "record_form.html")]
pub struct RecordFormPage {
    pub chrome: Chrome,
    pub collection: String,
    /// Empty for a new record.
    pub id: String,
    pub inputs: Vec<Input>,
    pub error: String,
    /// Auth collections: the record's account actions are offered.
    pub auth: bool,
    /// A token shown once (impersonation).
    pub token: String,
}

/// A JSON document, pretty-printed.
#[derive(Template, Debug)]
#[template(path = "json.html")]
pub struct JsonPage {
    pub chrome: Chrome,
    pub back: String,
    pub json: String,
}

/// One event in the events page.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub kind: String,
    pub collection: String,
    pub created: String,
    pub sent: bool,
    pub json: String,
}

/// The event pipeline's state and the latest events.
/// One live instance on the instances page.
#[derive(Debug)]
pub struct InstanceRow {
    pub id: String,
    pub version: String,
    pub address: String,
    pub uptime: String,
    pub heartbeat: String,
    pub this: bool,
}

#[derive(Template, Debug)]
#[template(path = "instances.html")]
pub struct InstancesPage {
    pub chrome: Chrome,
    /// `redis`, or `memory` (this instance only).
    pub cache: String,
    pub cache_ok: bool,
    pub instances: Vec<InstanceRow>,
}

#[derive(Template, Debug)]
#[template(path = "events.html")]
pub struct EventsPage {
    pub chrome: Chrome,
    pub backlog: u64,
    pub oldest: String,
    pub broker: String,
    pub broker_ok: bool,
    pub events: Vec<EventRow>,
}

/// One stored mail.
#[derive(Debug, Clone)]
pub struct MailRow {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub created: String,
}

/// Mails stored when no SMTP server is set.
#[derive(Template, Debug)]
#[template(path = "mails.html")]
pub struct MailsPage {
    pub chrome: Chrome,
    pub stores: bool,
    pub mails: Vec<MailRow>,
}

/// One stored mail, readable.
#[derive(Template, Debug)]
#[template(path = "mail.html")]
pub struct MailPage {
    pub chrome: Chrome,
    pub to: String,
    pub subject: String,
    pub created: String,
    /// The mail's text (HTML shown as text, never rendered).
    pub body: String,
}

/// One setting, read-only.
#[derive(Debug, Clone)]
pub struct SettingRow {
    pub key: String,
    pub value: String,
}

/// One setting that can be changed here.
#[derive(Debug, Clone)]
pub struct SettingInput {
    /// The form key (camelCase, as stored).
    pub key: String,
    pub label: String,
    /// The stored value; empty: as configured.
    pub value: String,
    /// The value in force when this is left empty.
    pub configured: String,
    pub error: String,
}

/// The server's settings: those changed here (stored, applied without a restart)
/// and the rest, read-only.
#[derive(Template, Debug)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub chrome: Chrome,
    pub inputs: Vec<SettingInput>,
    pub rows: Vec<SettingRow>,
    /// Where the test mail goes by default (the signed-in superuser).
    pub test_to: String,
    pub error: String,
}

/// Export the schema, or import one after seeing what it will change.
#[derive(Template, Debug)]
#[template(path = "schema.html")]
pub struct SchemaPage {
    pub chrome: Chrome,
    pub export: String,
    pub import: String,
    pub delete_missing: bool,
    /// What the pasted import would change, one line each.
    pub preview: Vec<String>,
    pub error: String,
}

/// One API key in the list.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    pub revoked: bool,
}

/// API keys: list, create (the secret shown once), revoke.
#[derive(Template, Debug)]
#[template(path = "keys.html")]
pub struct KeysPage {
    pub chrome: Chrome,
    pub keys: Vec<KeyRow>,
    /// A key just created: its secret, shown this once.
    pub secret: String,
    pub name: String,
    pub scopes: String,
    pub expires: String,
    pub errors: Vec<(String, String)>,
}

impl KeysPage {
    pub fn error(&self, field: &str) -> String {
        error_of(&self.errors, field)
    }
}

/// One schema change.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub created: String,
    pub collection: String,
    pub action: String,
    pub actor: String,
    pub diff: String,
}

/// The schema's history.
#[derive(Template, Debug)]
#[template(path = "history.html")]
pub struct HistoryPage {
    pub chrome: Chrome,
    pub rows: Vec<HistoryRow>,
}

fn error_of(errors: &[(String, String)], field: &str) -> String {
    errors
        .iter()
        .filter(|(path, _)| path == field)
        .map(|(_, message)| message.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_render_inert() {
        let page = CollectionsPage {
            chrome: Chrome {
                title: "Collections".into(),
                user: "<b>me</b>".into(),
                csrf: "t\"ok".into(),
                section: "collections",
                notice: Some("<script>alert(1)</script>".into()),
            },
            q: "\"><script>alert(2)</script>".into(),
            rows: vec![CollectionRow {
                name: "<script>alert(3)</script>".into(),
                kind: "base".into(),
                records: 2,
                system: false,
            }],
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("alert(3)"), "the name is shown, escaped");
        assert!(html.contains(&format!("src=\"{}\"", assets::JS.url)));
        // No inline script or style: the page works under `script-src 'self'`.
        assert!(!html.contains("<script>") && !html.contains("style="));
    }
}

/// A deployed function, as the functions page lists it.
#[derive(Debug, Clone)]
pub struct FunctionRow {
    pub name: String,
    pub version: u32,
    pub enabled: bool,
    pub triggers: String,
    pub exports: String,
    pub limits: String,
    pub size: String,
    pub created: String,
    /// The after-event filter, or empty.
    pub filter: String,
    /// Each schedule with its next run (`*/5 * * * * → 2026-12-03 10:05:00 UTC`).
    pub schedules: Vec<String>,
    /// `maxAttempts` and `backoffMs`, when it has after-event triggers.
    pub retries: String,
    /// Outbound HTTP allowlist, comma-separated, or empty.
    pub outbound: String,
}

/// An after-event call waiting for a retry, or a dead letter.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub function: String,
    pub trigger: String,
    pub event_id: String,
    pub record_id: String,
    pub attempts: i32,
    /// `retry` or `dead`.
    pub state: String,
    /// When the next attempt is due (retries), or when it died.
    pub when: String,
    pub error: String,
}

/// One call in the invocation log.
#[derive(Debug, Clone)]
pub struct InvocationRow {
    pub started: String,
    pub function: String,
    pub version: i64,
    pub trigger: String,
    pub outcome: String,
    pub duration: String,
    pub error: String,
    pub logs: Vec<String>,
}

/// WASM functions: deploy, enable/disable, delete, and the invocation log.
#[derive(Template, Debug)]
#[template(path = "functions.html")]
pub struct FunctionsPage {
    pub chrome: Chrome,
    pub functions: Vec<FunctionRow>,
    pub invocations: Vec<InvocationRow>,
    /// Retries waiting and dead letters, newest first.
    pub deliveries: Vec<DeliveryRow>,
    /// The invocation log's filter (a function's name), or empty.
    pub filter: String,
    /// A refused deploy's message.
    pub error: String,
}
