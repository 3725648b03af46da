//! Collections and fields, and their JSON form — PocketBase's, with field options
//! flattened into each field object. Parsing is strict: a wrong type or an unknown
//! key is an error naming its path (`fields.2.max`), never silently dropped.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::FieldErrors;

/// `base` collections hold records; `auth` collections hold records that can sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectionKind {
    Base,
    Auth,
}

impl CollectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionKind::Base => "base",
            CollectionKind::Auth => "auth",
        }
    }

    pub fn parse(text: &str) -> Option<CollectionKind> {
        match text {
            "base" => Some(CollectionKind::Base),
            "auth" => Some(CollectionKind::Auth),
            _ => None,
        }
    }
}

/// The five access rules. `None` is superusers only; `Some("")` is anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub list: Option<String>,
    pub view: Option<String>,
    pub create: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

/// A collection's definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub kind: CollectionKind,
    pub system: bool,
    pub fields: Vec<Field>,
    /// As given, `CREATE [UNIQUE] INDEX name ON coll (col, …)`; see [`super::index`].
    pub indexes: Vec<String>,
    pub rules: Rules,
    /// Present exactly for auth collections.
    pub auth: Option<AuthOptions>,
    pub created: String,
    pub updated: String,
}

/// What an auth collection adds to a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOptions {
    /// Extra condition for signing in (`null`: nobody may; `""`: anyone).
    pub auth_rule: Option<String>,
    /// Who may manage other records of the collection (set passwords, emails).
    pub manage_rule: Option<String>,
    pub password_auth_enabled: bool,
    /// Fields a user may sign in with (`email` by default).
    pub identity_fields: Vec<String>,
    /// Lifetime of an auth token, in seconds.
    pub token_duration: u64,
    /// Lifetimes of the one-time tokens, in seconds.
    pub verification_duration: u64,
    pub password_reset_duration: u64,
    pub email_change_duration: u64,
    /// Mail templates by PocketBase key (`verificationTemplate`, …).
    pub templates: BTreeMap<&'static str, MailTemplate>,
    pub oauth2: OAuth2Options,
}

/// A mail's subject and HTML body, with `{APP_NAME}`, `{APP_URL}`, `{TOKEN}` and
/// `{RECORD:field}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailTemplate {
    pub subject: String,
    pub body: String,
}

/// The mail templates an auth collection has, with PocketBase's keys and defaults.
pub const MAIL_TEMPLATES: [(&str, &str, &str); 3] = [
    (
        "verificationTemplate",
        "Verify your {APP_NAME} email",
        "<p>Hello,</p>\n<p>Thank you for joining us at {APP_NAME}.</p>\n<p>Click on the link below to verify your email address.</p>\n<p><a href=\"{APP_URL}/_/#/auth/confirm-verification/{TOKEN}\">Verify</a></p>\n<p>Thanks,<br/>{APP_NAME} team</p>",
    ),
    (
        "resetPasswordTemplate",
        "Reset your {APP_NAME} password",
        "<p>Hello,</p>\n<p>Click on the link below to reset your password.</p>\n<p><a href=\"{APP_URL}/_/#/auth/confirm-password-reset/{TOKEN}\">Reset password</a></p>\n<p><i>If you didn't ask to reset your password, you can ignore this email.</i></p>\n<p>Thanks,<br/>{APP_NAME} team</p>",
    ),
    (
        "confirmEmailChangeTemplate",
        "Confirm your {APP_NAME} new email address",
        "<p>Hello,</p>\n<p>Click on the link below to confirm your new email address.</p>\n<p><a href=\"{APP_URL}/_/#/auth/confirm-email-change/{TOKEN}\">Confirm new email</a></p>\n<p><i>If you didn't ask to change your email address, you can ignore this email.</i></p>\n<p>Thanks,<br/>{APP_NAME} team</p>",
    ),
];

/// OAuth2 sign-in for an auth collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OAuth2Options {
    pub enabled: bool,
    pub providers: Vec<OAuth2Provider>,
}

/// One OAuth2 / OpenID Connect provider. `github` and `google` fill in their URLs;
/// any other name needs `authURL`, `tokenURL` and `userInfoURL`.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2Provider {
    pub name: String,
    pub display_name: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth_url: String,
    pub token_url: String,
    pub user_info_url: String,
}

impl std::fmt::Debug for OAuth2Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Provider")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("auth_url", &self.auth_url)
            .finish_non_exhaustive()
    }
}

/// A known provider: name, display name, authorization, token and user-info URLs.
pub type Preset = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Known providers.
pub const OAUTH2_PRESETS: [Preset; 2] = [
    (
        "github",
        "GitHub",
        "https://github.com/login/oauth/authorize",
        "https://github.com/login/oauth/access_token",
        "https://api.github.com/user",
    ),
    (
        "google",
        "Google",
        "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token",
        "https://openidconnect.googleapis.com/v1/userinfo",
    ),
];

impl OAuth2Provider {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "displayName": self.display_name,
            "clientId": self.client_id, "clientSecret": self.client_secret,
            "authURL": self.auth_url, "tokenURL": self.token_url, "userInfoURL": self.user_info_url,
            "pkce": true,
        })
    }
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            auth_rule: Some(String::new()),
            manage_rule: None,
            password_auth_enabled: true,
            identity_fields: vec!["email".to_owned()],
            token_duration: 604_800,
            verification_duration: 259_200,
            password_reset_duration: 1_800,
            email_change_duration: 1_800,
            templates: MAIL_TEMPLATES
                .iter()
                .map(|(key, subject, body)| {
                    (
                        *key,
                        MailTemplate {
                            subject: (*subject).to_owned(),
                            body: (*body).to_owned(),
                        },
                    )
                })
                .collect(),
            oauth2: OAuth2Options::default(),
        }
    }
}

impl AuthOptions {
    fn template_json(&self, key: &str) -> Value {
        self.templates.get(key).map_or(
            Value::Null,
            |t| json!({"subject": t.subject, "body": t.body}),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "authRule": self.auth_rule,
            "manageRule": self.manage_rule,
            "passwordAuth": {"enabled": self.password_auth_enabled, "identityFields": self.identity_fields},
            "authToken": {"duration": self.token_duration},
            "verificationToken": {"duration": self.verification_duration},
            "passwordResetToken": {"duration": self.password_reset_duration},
            "emailChangeToken": {"duration": self.email_change_duration},
            "verificationTemplate": self.template_json("verificationTemplate"),
            "resetPasswordTemplate": self.template_json("resetPasswordTemplate"),
            "confirmEmailChangeTemplate": self.template_json("confirmEmailChangeTemplate"),
            "oauth2": {
                "enabled": self.oauth2.enabled,
                "providers": self.oauth2.providers.iter().map(OAuth2Provider::to_json).collect::<Vec<_>>(),
            },
        })
    }
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_by_id(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// Whether `field` is an auth record's `email`, which only its owner, superusers
    /// and anyone once `emailVisibility` is set may see — or match in a filter or sort.
    pub fn gates_email(&self, field: &Field) -> bool {
        self.auth.is_some() && field.name == "email"
    }
}

/// A field: its identity, the flags every field has, and its type with options.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// Stable across renames: a rename keeps the id, so it is a rename, not drop + add.
    pub id: String,
    pub name: String,
    pub system: bool,
    pub hidden: bool,
    pub presentable: bool,
    pub required: bool,
    /// Beyond PocketBase: the column may hold NULL (otherwise the type's zero value).
    pub nullable: bool,
    /// Beyond PocketBase: the value a record gets when none is given.
    pub default: Option<Value>,
    pub kind: FieldKind,
}

/// A field type and its options.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldKind {
    Text {
        min: u64,
        max: u64,
        pattern: String,
        autogenerate_pattern: String,
        primary_key: bool,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
        only_int: bool,
    },
    Bool,
    Email {
        except_domains: Vec<String>,
        only_domains: Vec<String>,
    },
    Url {
        except_domains: Vec<String>,
        only_domains: Vec<String>,
    },
    Date {
        min: String,
        max: String,
    },
    Autodate {
        on_create: bool,
        on_update: bool,
    },
    Select {
        values: Vec<String>,
        max_select: u64,
    },
    Json {
        max_size: u64,
    },
    Relation {
        collection_id: String,
        cascade_delete: bool,
        min_select: u64,
        max_select: u64,
    },
    Password {
        min: u64,
        max: u64,
        pattern: String,
        cost: u64,
    },
}

/// Every type name, for error messages.
pub const FIELD_TYPES: &[&str] = &[
    "text", "number", "bool", "email", "url", "date", "autodate", "select", "json", "relation",
    "password",
];

impl FieldKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldKind::Text { .. } => "text",
            FieldKind::Number { .. } => "number",
            FieldKind::Bool => "bool",
            FieldKind::Email { .. } => "email",
            FieldKind::Url { .. } => "url",
            FieldKind::Date { .. } => "date",
            FieldKind::Autodate { .. } => "autodate",
            FieldKind::Select { .. } => "select",
            FieldKind::Json { .. } => "json",
            FieldKind::Relation { .. } => "relation",
            FieldKind::Password { .. } => "password",
        }
    }

    /// Whether the value is a list (a multi select or multi relation), stored as a
    /// JSON array.
    pub fn is_multi(&self) -> bool {
        match self {
            FieldKind::Select { max_select, .. } | FieldKind::Relation { max_select, .. } => {
                *max_select > 1
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------
// JSON out

/// A number as JSON: whole numbers without a fraction (`5`, not `5.0`), as clients
/// that sent them expect them back.
pub fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

fn string_list(values: &[String]) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        json!(values)
    }
}

impl Field {
    /// The field as PocketBase's API shows it (options flattened).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("name".into(), json!(self.name));
        out.insert("type".into(), json!(self.kind.type_name()));
        out.insert("system".into(), json!(self.system));
        out.insert("hidden".into(), json!(self.hidden));
        out.insert("presentable".into(), json!(self.presentable));
        out.insert("required".into(), json!(self.required));
        out.insert("nullable".into(), json!(self.nullable));
        if let Some(default) = &self.default {
            out.insert("default".into(), default.clone());
        }
        let options = match &self.kind {
            FieldKind::Text {
                min,
                max,
                pattern,
                autogenerate_pattern,
                primary_key,
            } => json!({"min": min, "max": max, "pattern": pattern,
                "autogeneratePattern": autogenerate_pattern, "primaryKey": primary_key}),
            FieldKind::Number { min, max, only_int } => {
                json!({"min": min.map(number), "max": max.map(number), "onlyInt": only_int})
            }
            FieldKind::Bool => json!({}),
            FieldKind::Email {
                except_domains,
                only_domains,
            }
            | FieldKind::Url {
                except_domains,
                only_domains,
            } => json!({"exceptDomains": string_list(except_domains),
                "onlyDomains": string_list(only_domains)}),
            FieldKind::Date { min, max } => json!({"min": min, "max": max}),
            FieldKind::Autodate {
                on_create,
                on_update,
            } => json!({"onCreate": on_create, "onUpdate": on_update}),
            FieldKind::Select { values, max_select } => {
                json!({"values": values, "maxSelect": max_select})
            }
            FieldKind::Json { max_size } => json!({"maxSize": max_size}),
            FieldKind::Relation {
                collection_id,
                cascade_delete,
                min_select,
                max_select,
            } => json!({"collectionId": collection_id, "cascadeDelete": cascade_delete,
                "minSelect": min_select, "maxSelect": max_select}),
            FieldKind::Password {
                min,
                max,
                pattern,
                cost,
            } => json!({"min": min, "max": max, "pattern": pattern, "cost": cost}),
        };
        if let Value::Object(options) = options {
            out.extend(options);
        }
        Value::Object(out)
    }
}

impl Collection {
    /// The collection as PocketBase's API shows it.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "name": self.name,
            "type": self.kind.as_str(),
            "system": self.system,
            "fields": self.fields.iter().map(Field::to_json).collect::<Vec<_>>(),
            "indexes": self.indexes,
            "listRule": self.rules.list,
            "viewRule": self.rules.view,
            "createRule": self.rules.create,
            "updateRule": self.rules.update,
            "deleteRule": self.rules.delete,
            "created": self.created,
            "updated": self.updated,
        });
        if let (Some(auth), Value::Object(out)) = (&self.auth, &mut out)
            && let Value::Object(extra) = auth.to_json()
        {
            out.extend(extra);
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// JSON in

/// Reads typed values out of a JSON object, recording an error per bad key and
/// remembering which keys were read so the rest can be reported as unknown.
struct Reader<'o, 'e> {
    obj: &'o Map<String, Value>,
    path: String,
    used: Vec<&'static str>,
    errors: &'e mut FieldErrors,
}

impl<'o, 'e> Reader<'o, 'e> {
    fn new(obj: &'o Map<String, Value>, path: String, errors: &'e mut FieldErrors) -> Self {
        Reader {
            obj,
            path,
            used: Vec::new(),
            errors,
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&mut self, key: &str, code: &str, message: String) {
        let path = self.key_path(key);
        self.errors.add(path, code, message);
    }

    fn get(&mut self, key: &'static str) -> Option<&'o Value> {
        self.used.push(key);
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn bool(&mut self, key: &'static str) -> bool {
        match self.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.error(
                    key,
                    "validation_invalid_type",
                    "Must be true or false.".into(),
                );
                false
            }
        }
    }

    fn uint(&mut self, key: &'static str, default: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_u64() {
                Some(n) => n,
                None => {
                    self.error(
                        key,
                        "validation_invalid_type",
                        "Must be a whole number ≥ 0.".into(),
                    );
                    default
                }
            },
        }
    }

    fn float(&mut self, key: &'static str) -> Option<f64> {
        match self.get(key) {
            None => None,
            Some(v) => match v.as_f64() {
                Some(n) => Some(n),
                None => {
                    self.error(
                        key,
                        "validation_invalid_type",
                        "Must be a number or null.".into(),
                    );
                    None
                }
            },
        }
    }

    fn string(&mut self, key: &'static str) -> String {
        match self.get(key) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.error(key, "validation_invalid_type", "Must be a string.".into());
                String::new()
            }
        }
    }

    fn optional_string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(
                    key,
                    "validation_invalid_type",
                    "Must be a string or null.".into(),
                );
                None
            }
        }
    }

    fn strings(&mut self, key: &'static str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                self.error(
                    key,
                    "validation_invalid_type",
                    "Must be a list of strings.".into(),
                );
                Vec::new()
            }
        }
    }

    /// Report every key that was not read.
    fn finish(self) {
        let unknown: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !self.used.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            self.errors.add(
                path,
                "validation_unknown_key",
                format!("Unknown key `{key}`."),
            );
        }
    }
}

/// A collection definition as a client sent it, before checks against the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionInput {
    pub id: Option<String>,
    pub name: Option<String>,
    pub kind: Option<CollectionKind>,
    /// `None` when the key was absent (keep the old fields on update).
    pub fields: Option<Vec<FieldInput>>,
    pub indexes: Option<Vec<String>>,
    /// Per rule: `None` = absent (keep), `Some(None)` = null, `Some(Some(expr))`.
    pub rules: BTreeMap<&'static str, Option<String>>,
    /// Auth options given (each absent one keeps its old or default value).
    pub auth_rule: Option<Option<String>>,
    pub manage_rule: Option<Option<String>>,
    pub password_auth_enabled: Option<bool>,
    pub identity_fields: Option<Vec<String>>,
    pub token_duration: Option<u64>,
    /// One-time token lifetimes given, by PocketBase key (`verificationToken`, …).
    pub durations: BTreeMap<&'static str, u64>,
    pub templates: BTreeMap<&'static str, MailTemplate>,
    pub oauth2: Option<OAuth2Options>,
}

impl CollectionInput {
    /// The rules given, each absent one taken from `base`.
    pub fn rules_over(&self, base: &Rules) -> Rules {
        let rule = |key: &str, current: &Option<String>| match self.rules.get(key) {
            Some(value) => value.clone(),
            None => current.clone(),
        };
        Rules {
            list: rule("listRule", &base.list),
            view: rule("viewRule", &base.view),
            create: rule("createRule", &base.create),
            update: rule("updateRule", &base.update),
            delete: rule("deleteRule", &base.delete),
        }
    }

    /// The auth options given, each absent one taken from `base`.
    pub fn auth_over(&self, base: AuthOptions) -> AuthOptions {
        AuthOptions {
            auth_rule: self.auth_rule.clone().unwrap_or(base.auth_rule),
            manage_rule: self.manage_rule.clone().unwrap_or(base.manage_rule),
            password_auth_enabled: self
                .password_auth_enabled
                .unwrap_or(base.password_auth_enabled),
            identity_fields: self.identity_fields.clone().unwrap_or(base.identity_fields),
            token_duration: self.token_duration.unwrap_or(base.token_duration),
            verification_duration: self
                .durations
                .get("verificationToken")
                .copied()
                .unwrap_or(base.verification_duration),
            password_reset_duration: self
                .durations
                .get("passwordResetToken")
                .copied()
                .unwrap_or(base.password_reset_duration),
            email_change_duration: self
                .durations
                .get("emailChangeToken")
                .copied()
                .unwrap_or(base.email_change_duration),
            templates: {
                let mut templates = base.templates;
                templates.extend(self.templates.clone());
                templates
            },
            oauth2: self.oauth2.clone().unwrap_or(base.oauth2),
        }
    }
}

/// Keys of PocketBase collections that Basalt accepts and ignores until it supports
/// them, so a PocketBase export imports as it is.
const IGNORED_POCKETBASE_KEYS: [&str; 5] = ["mfa", "otp", "authAlert", "fileToken", "viewQuery"];

/// One `oauth2.providers` entry; presets fill in the URLs of known providers.
fn parse_provider(value: &Value, path: String, errors: &mut FieldErrors) -> Option<OAuth2Provider> {
    let Some(obj) = value.as_object() else {
        errors.add(path, "validation_invalid_type", "Must be an object.".into());
        return None;
    };
    let mut r = Reader::new(obj, path.clone(), errors);
    let name = r.string("name");
    let preset = OAUTH2_PRESETS.iter().find(|p| p.0 == name);
    let or_preset = |given: String, pick: fn(&Preset) -> &'static str| {
        if given.is_empty() {
            preset.map(|p| pick(p).to_owned()).unwrap_or_default()
        } else {
            given
        }
    };
    let display_name = or_preset(r.string("displayName"), |p| p.1);
    let provider = OAuth2Provider {
        display_name: if display_name.is_empty() {
            name.clone()
        } else {
            display_name
        },
        client_id: r.string("clientId"),
        client_secret: r.string("clientSecret"),
        auth_url: or_preset(r.string("authURL"), |p| p.2),
        token_url: or_preset(r.string("tokenURL"), |p| p.3),
        user_info_url: or_preset(r.string("userInfoURL"), |p| p.4),
        name,
    };
    r.used.extend(["pkce", "extra"]);
    r.finish();
    let mut ok = true;
    let names_ok = !provider.name.is_empty()
        && provider
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !names_ok {
        errors.add(
            format!("{path}.name"),
            "validation_invalid_value",
            "A provider needs a name of letters, digits, `_` or `-`.".into(),
        );
        ok = false;
    }
    for (key, value) in [
        ("clientId", &provider.client_id),
        ("authURL", &provider.auth_url),
        ("tokenURL", &provider.token_url),
        ("userInfoURL", &provider.user_info_url),
    ] {
        let valid = match key {
            "clientId" => !value.is_empty(),
            _ => url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
        };
        if !valid {
            errors.add(
                format!("{path}.{key}"),
                "validation_required",
                format!("`{key}` is required (an http(s) URL for the URLs)."),
            );
            ok = false;
        }
    }
    ok.then_some(provider)
}

/// A field as a client sent it; `id` may be missing on new fields.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldInput {
    pub id: Option<String>,
    pub field: Field,
}

pub const RULE_KEYS: [&str; 5] = [
    "listRule",
    "viewRule",
    "createRule",
    "updateRule",
    "deleteRule",
];

/// Parse a collection body. Every problem is collected into `errors`; the result is
/// only meaningful when `errors` stays empty.
pub fn parse_collection(body: &Value, errors: &mut FieldErrors) -> CollectionInput {
    let mut input = CollectionInput {
        id: None,
        name: None,
        kind: None,
        fields: None,
        indexes: None,
        rules: BTreeMap::new(),
        auth_rule: None,
        manage_rule: None,
        password_auth_enabled: None,
        identity_fields: None,
        token_duration: None,
        durations: BTreeMap::new(),
        templates: BTreeMap::new(),
        oauth2: None,
    };
    let Some(obj) = body.as_object() else {
        errors.add(
            "",
            "validation_invalid_type",
            "The body must be a JSON object.".into(),
        );
        return input;
    };
    let fields_value;
    let indexes_value;
    {
        let mut r = Reader::new(obj, String::new(), errors);
        input.id = r.optional_string("id");
        input.name = r.optional_string("name");
        if let Some(kind) = r.optional_string("type") {
            input.kind = CollectionKind::parse(&kind);
            if input.kind.is_none() {
                r.error(
                    "type",
                    "validation_invalid_value",
                    "Must be base or auth.".into(),
                );
            }
        }
        for key in RULE_KEYS {
            r.used.push(key);
            match obj.get(key) {
                None => {}
                Some(Value::Null) => {
                    input.rules.insert(key, None);
                }
                Some(Value::String(s)) => {
                    input.rules.insert(key, Some(s.clone()));
                }
                Some(_) => r.error(
                    key,
                    "validation_invalid_type",
                    "Must be a string or null.".into(),
                ),
            }
        }
        for (key, slot) in [
            ("authRule", &mut input.auth_rule),
            ("manageRule", &mut input.manage_rule),
        ] {
            r.used.push(key);
            match obj.get(key) {
                None => {}
                Some(Value::Null) => *slot = Some(None),
                Some(Value::String(s)) => *slot = Some(Some(s.clone())),
                Some(_) => r.error(
                    key,
                    "validation_invalid_type",
                    "Must be a string or null.".into(),
                ),
            }
        }
        if let Some(value) = r.get("passwordAuth") {
            match value.as_object() {
                Some(obj) => {
                    let mut inner = Reader::new(obj, "passwordAuth".into(), r.errors);
                    input.password_auth_enabled = Some(inner.bool("enabled"));
                    input.identity_fields = Some(inner.strings("identityFields"));
                    inner.finish();
                }
                None => r.error(
                    "passwordAuth",
                    "validation_invalid_type",
                    "Must be an object.".into(),
                ),
            }
        }
        if let Some(value) = r.get("authToken") {
            match value.as_object() {
                Some(obj) => {
                    let mut inner = Reader::new(obj, "authToken".into(), r.errors);
                    input.token_duration = Some(inner.uint("duration", 604_800));
                    // PocketBase shows a secret here; Basalt keeps token secrets elsewhere.
                    inner.used.push("secret");
                    inner.finish();
                }
                None => r.error(
                    "authToken",
                    "validation_invalid_type",
                    "Must be an object.".into(),
                ),
            }
        }
        for key in [
            "verificationToken",
            "passwordResetToken",
            "emailChangeToken",
        ] {
            if let Some(value) = r.get(key) {
                match value.as_object() {
                    Some(obj) => {
                        let mut inner = Reader::new(obj, key.into(), r.errors);
                        let duration = inner.uint("duration", 0);
                        inner.used.push("secret");
                        inner.finish();
                        if duration == 0 {
                            r.error(
                                key,
                                "validation_invalid_value",
                                "`duration` must be at least 1 second.".into(),
                            );
                        }
                        input.durations.insert(key, duration);
                    }
                    None => r.error(key, "validation_invalid_type", "Must be an object.".into()),
                }
            }
        }
        for (key, _, _) in MAIL_TEMPLATES {
            if let Some(value) = r.get(key) {
                match value.as_object() {
                    Some(obj) => {
                        let mut inner = Reader::new(obj, key.into(), r.errors);
                        let template = MailTemplate {
                            subject: inner.string("subject"),
                            body: inner.string("body"),
                        };
                        inner.finish();
                        input.templates.insert(key, template);
                    }
                    None => r.error(key, "validation_invalid_type", "Must be an object.".into()),
                }
            }
        }
        if let Some(value) = r.get("oauth2") {
            match value.as_object() {
                Some(obj) => {
                    let mut inner = Reader::new(obj, "oauth2".into(), r.errors);
                    let enabled = inner.bool("enabled");
                    inner.used.push("mappedFields");
                    let providers = match inner.get("providers") {
                        None => Vec::new(),
                        Some(Value::Array(items)) => items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, item)| {
                                parse_provider(item, format!("oauth2.providers.{i}"), inner.errors)
                            })
                            .collect(),
                        Some(_) => {
                            inner.error(
                                "providers",
                                "validation_invalid_type",
                                "Must be a list.".into(),
                            );
                            Vec::new()
                        }
                    };
                    inner.finish();
                    input.oauth2 = Some(OAuth2Options { enabled, providers });
                }
                None => r.error(
                    "oauth2",
                    "validation_invalid_type",
                    "Must be an object.".into(),
                ),
            }
        }
        r.used.extend(IGNORED_POCKETBASE_KEYS);
        fields_value = r.get("fields");
        indexes_value = r.get("indexes");
        // Read-only keys a client may echo back from a GET.
        for key in ["system", "created", "updated"] {
            r.used.push(key);
        }
        r.finish();
    }
    if let Some(value) = fields_value {
        match value.as_array() {
            Some(items) => {
                let fields = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| parse_field(item, format!("fields.{i}"), errors))
                    .collect();
                input.fields = Some(fields);
            }
            None => errors.add(
                "fields",
                "validation_invalid_type",
                "Must be a list of fields.".into(),
            ),
        }
    }
    if let Some(value) = indexes_value {
        match value.as_array() {
            Some(items) if items.iter().all(Value::is_string) => {
                input.indexes = Some(
                    items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                );
            }
            _ => errors.add(
                "indexes",
                "validation_invalid_type",
                "Must be a list of CREATE INDEX strings.".into(),
            ),
        }
    }
    input
}

fn parse_field(value: &Value, path: String, errors: &mut FieldErrors) -> Option<FieldInput> {
    let Some(obj) = value.as_object() else {
        errors.add(
            path,
            "validation_invalid_type",
            "A field must be an object.".into(),
        );
        return None;
    };
    let mut r = Reader::new(obj, path, errors);
    let id = r.optional_string("id").filter(|s| !s.is_empty());
    let name = r.string("name");
    let type_name = r.string("type");
    let system = r.bool("system");
    let hidden = r.bool("hidden");
    let presentable = r.bool("presentable");
    let required = r.bool("required");
    let nullable = r.bool("nullable");
    let default = r.get("default").cloned();
    let kind = match type_name.as_str() {
        "text" => Some(FieldKind::Text {
            min: r.uint("min", 0),
            max: r.uint("max", 0),
            pattern: r.string("pattern"),
            autogenerate_pattern: r.string("autogeneratePattern"),
            primary_key: r.bool("primaryKey"),
        }),
        "number" => Some(FieldKind::Number {
            min: r.float("min"),
            max: r.float("max"),
            only_int: r.bool("onlyInt"),
        }),
        "bool" => Some(FieldKind::Bool),
        "email" => Some(FieldKind::Email {
            except_domains: r.strings("exceptDomains"),
            only_domains: r.strings("onlyDomains"),
        }),
        "url" => Some(FieldKind::Url {
            except_domains: r.strings("exceptDomains"),
            only_domains: r.strings("onlyDomains"),
        }),
        "date" => Some(FieldKind::Date {
            min: r.string("min"),
            max: r.string("max"),
        }),
        "autodate" => Some(FieldKind::Autodate {
            on_create: r.bool("onCreate"),
            on_update: r.bool("onUpdate"),
        }),
        "select" => Some(FieldKind::Select {
            values: r.strings("values"),
            max_select: r.uint("maxSelect", 1).max(1),
        }),
        "json" => Some(FieldKind::Json {
            max_size: r.uint("maxSize", 0),
        }),
        "relation" => Some(FieldKind::Relation {
            collection_id: r.string("collectionId"),
            cascade_delete: r.bool("cascadeDelete"),
            min_select: r.uint("minSelect", 0),
            max_select: r.uint("maxSelect", 1).max(1),
        }),
        "password" => Some(FieldKind::Password {
            min: r.uint("min", 8),
            max: r.uint("max", 0),
            pattern: r.string("pattern"),
            cost: r.uint("cost", 0),
        }),
        "" => {
            r.error("type", "validation_required", "Missing field type.".into());
            None
        }
        other => {
            let message = format!(
                "Unknown field type `{other}`; expected one of {}.",
                FIELD_TYPES.join(", ")
            );
            r.error("type", "validation_invalid_type", message);
            None
        }
    };
    if kind.is_some() {
        r.finish();
    }
    Some(FieldInput {
        id,
        field: Field {
            id: String::new(),
            name,
            system,
            hidden,
            presentable,
            required,
            nullable,
            default,
            kind: kind?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> (CollectionInput, FieldErrors) {
        let mut errors = FieldErrors::default();
        let input = parse_collection(&body, &mut errors);
        (input, errors)
    }

    #[test]
    fn a_pocketbase_definition_round_trips() {
        let body = json!({
            "name": "posts", "type": "base", "listRule": "", "viewRule": null,
            "fields": [
                {"name": "title", "type": "text", "required": true, "max": 200},
                {"name": "views", "type": "number", "onlyInt": true, "min": 0},
                {"name": "tags", "type": "select", "values": ["a", "b"], "maxSelect": 2},
                {"name": "author", "type": "relation", "collectionId": "users_id", "maxSelect": 1}
            ],
            "indexes": ["CREATE INDEX idx_title ON posts (title)"]
        });
        let (input, errors) = parse(body);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(input.name.as_deref(), Some("posts"));
        assert_eq!(input.rules.get("listRule"), Some(&Some(String::new())));
        assert_eq!(input.rules.get("viewRule"), Some(&None));
        assert!(
            !input.rules.contains_key("createRule"),
            "absent stays absent"
        );
        let fields = input.fields.unwrap();
        assert_eq!(fields.len(), 4);
        assert!(fields[2].field.kind.is_multi());
        assert!(!fields[3].field.kind.is_multi());
        let back = fields[0].field.to_json();
        assert_eq!(back["max"], 200);
        assert_eq!(back["type"], "text");
    }

    #[test]
    fn wrong_option_types_and_unknown_keys_are_named() {
        let (_, errors) = parse(json!({
            "name": "posts",
            "fields": [
                {"name": "a", "type": "number", "min": "zero"},
                {"name": "b", "type": "text", "maxx": 3},
                {"name": "c", "type": "geoPoint"},
                {"name": "d"},
                "nope"
            ],
            "listRule": 5,
            "colour": "red"
        }));
        let keys: Vec<&str> = errors.keys().collect();
        for expected in [
            "fields.0.min",
            "fields.1.maxx",
            "fields.2.type",
            "fields.3.type",
            "fields.4",
            "listRule",
            "colour",
        ] {
            assert!(keys.contains(&expected), "{expected} in {keys:?}");
        }
    }

    #[test]
    fn non_object_bodies_are_refused() {
        let (_, errors) = parse(json!([1, 2]));
        assert!(!errors.is_empty());
        let (_, errors) = parse(json!({"name": "x", "fields": {"a": 1}}));
        assert!(errors.keys().any(|k| k == "fields"));
    }
}
