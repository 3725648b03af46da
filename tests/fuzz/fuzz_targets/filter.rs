//! The filter language on arbitrary text: parse, check against a small schema and
//! compile to SQL for both engines, as a client's filter and as a rule. Nothing may
//! panic, and no literal text of the filter may reach the SQL (values are bound).
#![no_main]

use std::sync::OnceLock;

use basalt_server::filter::compile::{Request, compile};
use basalt_server::filter::resolve::Scope;
use basalt_server::schema::Snapshot;
use libfuzzer_sys::fuzz_target;
use sea_orm::DatabaseBackend;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let schema = serde_json::json!([
            {"name": "users", "type": "auth", "fields": [{"name": "role", "type": "text"}]},
            {"name": "posts", "fields": [
                {"name": "title", "type": "text"}, {"name": "views", "type": "number"},
                {"name": "secret", "type": "text", "hidden": true},
                {"name": "published", "type": "date"}, {"name": "meta", "type": "json"},
                {"name": "author", "type": "relation", "collectionId": "users", "maxSelect": 1},
                {"name": "readers", "type": "relation", "collectionId": "users", "maxSelect": 9},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3}
            ], "listRule": "", "viewRule": "author = @request.auth.id"},
            {"name": "comments", "fields": [
                {"name": "text", "type": "text"},
                {"name": "post", "type": "relation", "collectionId": "posts", "maxSelect": 1}
            ], "listRule": "", "viewRule": ""}
        ]);
        let empty = Snapshot::new(0, Vec::new());
        let definitions = schema.as_array().cloned().unwrap_or_default();
        match basalt_server::schema::service::plan_import(&empty, &definitions, false) {
            Ok(plan) => plan.snapshot_after(&empty),
            Err(err) => panic!("the fuzz schema is invalid: {err:?}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some(filter)) = basalt_server::filter::parse(text) else {
        return;
    };
    let snapshot = snapshot();
    let Some(posts) = snapshot.get("posts") else {
        return;
    };
    let mut request = Request::new("GET");
    request.auth = Some((
        "users".to_owned(),
        serde_json::from_str(r#"{"id": "u1", "email": "ann@example.com"}"#).unwrap_or_default(),
    ));
    for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
        for hidden in [false, true] {
            if let Ok(condition) = compile(
                &filter,
                posts,
                snapshot,
                &request,
                Scope { hidden },
                backend,
            ) {
                let mut select = sea_orm::sea_query::Query::select();
                select
                    .expr(sea_orm::sea_query::Expr::val(1))
                    .from_as(
                        sea_orm::sea_query::Alias::new("posts"),
                        sea_orm::sea_query::Alias::new("r"),
                    )
                    .and_where(condition);
                let statement = backend.build(&select);
                // A string literal of the filter never appears in the SQL text.
                for quote in ['\'', '"'] {
                    for literal in text.split(quote).skip(1).step_by(2) {
                        // Long, alphanumeric, with a digit and a letter: no identifier
                        // or keyword of the statement looks like that.
                        let distinctive = literal.len() >= 6
                            && literal.chars().all(|c| c.is_ascii_alphanumeric())
                            && literal.chars().any(|c| c.is_ascii_digit())
                            && literal.chars().any(|c| c.is_ascii_alphabetic());
                        if distinctive {
                            assert!(
                                !statement.sql.contains(literal),
                                "value `{literal}` inlined into: {}",
                                statement.sql
                            );
                        }
                    }
                }
            }
        }
    }
});
