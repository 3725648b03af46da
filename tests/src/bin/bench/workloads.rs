//! The data the workloads need, seeded through the PocketBase web API that Basalt
//! speaks (so the same code seeds the PocketBase peer), and the workloads: each is a
//! name, a description and a [`Plan`] of requests. A new workload (GraphQL, realtime
//! fan-out, functions, events) is one more entry in [`all`].

use std::sync::Arc;

use anyhow::{Context, bail};
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::load::{Call, Plan};

pub const USERS: usize = 10;
pub const ARTICLES: usize = 100;

/// A superuser token for `email`/`password`.
///
/// Fails when the sign-in does.
pub async fn admin_token(base: &str, email: &str, password: &str) -> anyhow::Result<String> {
    let auth = call(
        &basalt_tests::client(),
        base,
        None,
        reqwest::Method::POST,
        "/api/collections/_superusers/auth-with-password",
        json!({"identity": email, "password": password}),
    )
    .await?;
    Ok(auth
        .get("token")
        .and_then(Value::as_str)
        .context("superuser token")?
        .to_owned())
}

/// What seeding left for the workloads to use.
#[derive(Debug)]
pub struct Seeded {
    /// A superuser's token (deploys the functions workloads use).
    pub admin: String,
    /// `Bearer …` of user 0, who owns `notes` with [`Seeded::note_ids`].
    pub token: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
    pub article_ids: Vec<String>,
    /// User 0's notes.
    pub note_ids: Vec<String>,
}

/// A workload: its id, what it does, and its requests.
pub struct Workload {
    pub id: &'static str,
    pub what: &'static str,
    pub plan: Plan,
    /// GraphQL: Basalt only (PocketBase has none), and a 200 may still carry errors,
    /// so one request is checked before the load.
    pub graphql: bool,
    /// A function deployed for this workload only (Basalt only): its name and
    /// triggers. The guest is the SDK's `faults` example, which answers `/hello` and
    /// passes ordinary writes through unchanged.
    pub function: Option<(&'static str, &'static [&'static str])>,
}

/// `POST /graphql` with `query` and `variables`.
fn graphql(query: &str, variables: Value) -> Call {
    Call::with_json(
        Method::POST,
        "/graphql",
        &json!({"query": query, "variables": variables}),
    )
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = client.request(method, format!("{base}{path}")).json(&body);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path} answered {status}: {body}");
    }
    Ok(body)
}

fn id_of(value: &Value) -> anyhow::Result<String> {
    value
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no id in the answer")
}

/// Collections `articles` (public) and `notes` (owner rules, `category` indexed), ten
/// users, 100 articles and `rows` notes spread over the users, through the API.
///
/// The `created`/`updated` autodate fields are listed: Basalt adds them to every
/// collection, PocketBase (since 0.23) only when asked, and both servers should
/// write the same columns. PocketBase needs batch requests switched on first
/// ([`crate::peer::configure_pocketbase`]).
pub async fn seed(
    base: &str,
    admin_email: &str,
    admin_password: &str,
    rows: usize,
) -> anyhow::Result<Seeded> {
    use reqwest::Method as M;
    let autodate = |name: &str, on_update: bool| json!({"name": name, "type": "autodate", "onCreate": true, "onUpdate": on_update});
    let (created, updated) = (autodate("created", false), autodate("updated", true));
    let client = basalt_tests::client();
    let auth = call(
        &client,
        base,
        None,
        M::POST,
        "/api/collections/_superusers/auth-with-password",
        json!({"identity": admin_email, "password": admin_password}),
    )
    .await?;
    let admin = auth
        .get("token")
        .and_then(Value::as_str)
        .context("superuser token")?
        .to_owned();
    let admin_token = admin.clone();
    let admin = Some(admin.as_str());
    call(
        &client,
        base,
        admin,
        M::POST,
        "/api/collections",
        json!({
            "name": "articles", "listRule": "", "viewRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "body", "type": "text"},
                created,
                updated,
            ],
        }),
    )
    .await?;
    let owner = "owner = @request.auth.id";
    call(
        &client,
        base,
        admin,
        M::POST,
        "/api/collections",
        json!({
            "name": "notes", "listRule": owner, "viewRule": owner, "createRule": owner,
            "updateRule": owner, "deleteRule": owner,
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "category", "type": "number"},
                {"name": "n", "type": "number"},
                {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "required": true},
                created,
                updated,
            ],
            "indexes": [
                "CREATE INDEX idx_notes_category ON notes (category)",
                "CREATE INDEX idx_notes_owner ON notes (owner)",
            ],
        }),
    )
    .await?;

    let password = "bench-password".to_owned();
    let mut users = Vec::new();
    for i in 0..USERS {
        let email = format!("user{i}@bench.local");
        let user = call(
            &client,
            base,
            None,
            M::POST,
            "/api/collections/users/records",
            json!({"email": email, "password": password, "passwordConfirm": password}),
        )
        .await?;
        users.push(id_of(&user)?);
    }

    let progress = ProgressBar::new((ARTICLES + rows) as u64).with_style(
        ProgressStyle::with_template("bench: seeding {bar:40} {pos}/{len} rows ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut article_ids = Vec::new();
    let mut note_ids = Vec::new();
    // 50 creates per batch request (the default `batch_max_requests`).
    let total = ARTICLES + rows;
    let mut next = 0;
    while next < total {
        let end = (next + 50).min(total);
        let requests: Vec<Value> = (next..end)
            .map(|i| {
                if i < ARTICLES {
                    json!({"method": "POST", "url": "/api/collections/articles/records",
                           "body": {"title": format!("article {i}"), "body": "lorem ipsum ".repeat(20)}})
                } else {
                    let n = i - ARTICLES;
                    let owner = users.get(n % USERS).cloned().unwrap_or_default();
                    json!({"method": "POST", "url": "/api/collections/notes/records",
                           "body": {"title": format!("note {n}"), "category": (n / USERS) % 10, "n": 0, "owner": owner}})
                }
            })
            .collect();
        let answers = call(
            &client,
            base,
            admin,
            M::POST,
            "/api/batch",
            json!({"requests": requests}),
        )
        .await?;
        for (offset, answer) in answers.as_array().into_iter().flatten().enumerate() {
            let i = next + offset;
            let body = answer.get("body").cloned().unwrap_or(Value::Null);
            if i < ARTICLES {
                article_ids.push(id_of(&body)?);
            } else if (i - ARTICLES).is_multiple_of(USERS) {
                note_ids.push(id_of(&body)?);
            }
        }
        progress.set_position(end as u64);
        next = end;
    }
    progress.finish_and_clear();

    let email = "user0@bench.local".to_owned();
    let signed_in = call(
        &client,
        base,
        None,
        M::POST,
        "/api/collections/users/auth-with-password",
        json!({"identity": email, "password": password}),
    )
    .await?;
    let token = signed_in
        .get("token")
        .and_then(Value::as_str)
        .context("user token")?;
    Ok(Seeded {
        admin: admin_token,
        token: format!("Bearer {token}"),
        user_id: users.first().cloned().context("no user")?,
        email,
        password,
        article_ids,
        note_ids,
    })
}

fn pick(ids: &Arc<Vec<String>>, n: u64) -> &str {
    let len = ids.len().max(1) as u64;
    ids.get((n % len) as usize).map_or("", String::as_str)
}

/// Every Basalt workload, in order.
pub fn all(seeded: &Seeded) -> Vec<Workload> {
    let articles = Arc::new(seeded.article_ids.clone());
    let notes = Arc::new(seeded.note_ids.clone());
    let me = seeded.user_id.clone();
    let credentials = json!({"identity": seeded.email, "password": seeded.password});
    let list = "/api/collections/notes/records?perPage=20&filter=category%3D3";
    vec![
        Workload {
            id: "W1",
            what: "view one record by id (public rule)",
            plan: {
                let articles = Arc::clone(&articles);
                Arc::new(move |conn, n| {
                    Call::get(format!(
                        "/api/collections/articles/records/{}",
                        pick(&articles, n * 7 + conn as u64)
                    ))
                })
            },
            graphql: false,
            function: None,
        },
        Workload {
            id: "G1",
            what: "GraphQL: one record by id, W1's (article(id:))",
            plan: Arc::new(move |conn, n| {
                graphql(
                    "query($id: ID!) { article(id: $id) { id title body created updated } }",
                    json!({"id": pick(&articles, n * 7 + conn as u64)}),
                )
            }),
            graphql: true,
            function: None,
        },
        Workload {
            id: "G2",
            what: "GraphQL: W6's page of 20 with the owner relation nested",
            plan: Arc::new(move |_, _| {
                graphql(
                    "{ notes(perPage: 20, where: {category: {_eq: 3}}) { totalItems items { id title category owner { id email } } } }",
                    json!({}),
                )
            }),
            graphql: true,
            function: None,
        },
        Workload {
            id: "W2",
            what: "list 20 of 10,000, indexed filter + owner rule",
            plan: Arc::new(move |_, _| Call::get(list)),
            graphql: false,
            function: None,
        },
        Workload {
            id: "W2s",
            what: "W2 with skipTotal",
            plan: Arc::new(move |_, _| Call::get(format!("{list}&skipTotal=1"))),
            graphql: false,
            function: None,
        },
        Workload {
            id: "W6",
            // Before W3: the rows W3 adds would change what W2 and W6 list.
            what: "list 20 with expand of a relation",
            plan: Arc::new(move |_, _| Call::get(format!("{list}&expand=owner"))),
            graphql: false,
            function: None,
        },
        Workload {
            id: "W3",
            what: "create with an owner create rule",
            plan: {
                let me = me.clone();
                Arc::new(move |_, n| {
                    Call::with_json(
                        Method::POST,
                        "/api/collections/notes/records",
                        &json!({"title": format!("new {n}"), "category": n % 10, "owner": me}),
                    )
                })
            },
            graphql: false,
            function: None,
        },
        Workload {
            id: "H0",
            what: "static route (GET /api/health), F1's baseline",
            plan: Arc::new(|_, _| Call::get("/api/health")),
            graphql: false,
            function: None,
        },
        Workload {
            id: "F1",
            what: "HTTP function answering a small JSON body",
            plan: Arc::new(|_, _| Call::get("/api/functions/bench-http/hello")),
            graphql: false,
            function: Some(("bench-http", &["http"])),
        },
        Workload {
            id: "F2",
            what: "W3 with a pass-through before-create hook",
            plan: {
                let me = me.clone();
                Arc::new(move |_, n| {
                    Call::with_json(
                        Method::POST,
                        "/api/collections/notes/records",
                        &json!({"title": format!("hooked {n}"), "category": n % 10, "owner": me}),
                    )
                })
            },
            graphql: false,
            function: Some(("bench-hook", &["notes.before-create"])),
        },
        Workload {
            id: "W4",
            what: "90% view / 10% update (n+ 1) of own notes",
            plan: {
                let notes = Arc::clone(&notes);
                Arc::new(move |conn, n| {
                    let id = pick(&notes, n * 13 + conn as u64);
                    let path = format!("/api/collections/notes/records/{id}");
                    if n % 10 == 9 {
                        Call::with_json(Method::PATCH, path, &json!({"n+": 1}))
                    } else {
                        Call::get(path)
                    }
                })
            },
            graphql: false,
            function: None,
        },
        Workload {
            id: "W5",
            // Last: argon2 leaves the most memory behind.
            what: "auth-with-password (argon2id)",
            plan: Arc::new(move |_, _| {
                Call::with_json(
                    Method::POST,
                    "/api/collections/users/auth-with-password",
                    &credentials,
                )
            }),
            graphql: false,
            function: None,
        },
    ]
}

/// The ceiling's one request.
pub fn ceiling() -> Plan {
    Arc::new(|_, _| Call::get("/ceiling"))
}
