//! Access rules, table-driven: for each kind of rule (`null` = superusers only, `""` =
//! anyone, an owner expression) every operation is tried by every kind of caller —
//! anonymous, the owner, another user, a superuser — and both the status and what is
//! stored afterwards are checked: a refused write changes nothing.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(every_operation_for_every_caller);

#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    Owner,
    Other,
    Superuser,
}

const CALLERS: [Caller; 4] = [
    Caller::Anonymous,
    Caller::Owner,
    Caller::Other,
    Caller::Superuser,
];

/// Expected outcome of one operation per caller, in [`CALLERS`] order.
struct Row {
    collection: &'static str,
    /// Whether the owner's record is in the caller's list (`None`: the list is refused
    /// with the status in `list_status`).
    listed: [Option<bool>; 4],
    list_status: [u16; 4],
    view: [u16; 4],
    create: [u16; 4],
    update: [u16; 4],
    delete: [u16; 4],
}

const TABLE: [Row; 3] = [
    Row {
        collection: "locked",
        listed: [None, None, None, Some(true)],
        list_status: [403, 403, 403, 200],
        view: [403, 403, 403, 200],
        create: [403, 403, 403, 200],
        update: [403, 403, 403, 200],
        delete: [403, 403, 403, 204],
    },
    Row {
        collection: "open",
        listed: [Some(true); 4],
        list_status: [200; 4],
        view: [200; 4],
        create: [200; 4],
        update: [200; 4],
        delete: [204; 4],
    },
    Row {
        collection: "owned",
        listed: [Some(false), Some(true), Some(false), Some(true)],
        list_status: [200; 4],
        view: [404, 200, 404, 200],
        create: [400, 200, 400, 200],
        update: [404, 200, 404, 200],
        delete: [404, 204, 404, 204],
    },
];

async fn every_operation_for_every_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    app.create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    let tokens = [
        None,
        Some(
            app.sign_in("users", "ann@example.com", "ann-password")
                .await,
        ),
        Some(
            app.sign_in("users", "bob@example.com", "bob-password")
                .await,
        ),
        Some(admin.clone()),
    ];
    let owner = "owner = @request.auth.id";
    for (name, rule) in [
        ("locked", Value::Null),
        ("open", json!("")),
        ("owned", json!(owner)),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections",
                Some(&admin),
                Some(json!({
                    "name": name,
                    "listRule": rule, "viewRule": rule, "createRule": rule,
                    "updateRule": rule, "deleteRule": rule,
                    "fields": [
                        {"name": "title", "type": "text"},
                        {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_"},
                    ],
                })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    for row in &TABLE {
        let c = row.collection;
        // The owner's records: one per caller, so each caller's update and delete
        // act on a record nobody else has touched.
        for i in 0..CALLERS.len() {
            app.state
                .records
                .insert_system(
                    c,
                    json!({"id": format!("{c}{i}"), "title": "original", "owner": ann_id})
                        .as_object()
                        .unwrap()
                        .clone(),
                )
                .await
                .unwrap();
        }
        for (i, caller) in CALLERS.iter().enumerate() {
            let token = tokens[i].as_deref();
            let what = format!("{c} as {caller:?}");
            let id = format!("{c}{i}");

            let (status, page) = app
                .call(
                    Method::GET,
                    &format!("/api/collections/{c}/records?perPage=100"),
                    token,
                    None,
                )
                .await;
            assert_eq!(status, row.list_status[i], "list {what}: {page}");
            if let Some(listed) = row.listed[i] {
                let ids: Vec<&str> = page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids.contains(&id.as_str()), listed, "list {what}: {page}");
                assert_eq!(
                    page["totalItems"].as_u64().unwrap() as usize,
                    ids.len(),
                    "totalItems respects the rule: {what}"
                );
            }

            let (status, body) = app
                .call(
                    Method::GET,
                    &format!("/api/collections/{c}/records/{id}"),
                    token,
                    None,
                )
                .await;
            assert_eq!(status, row.view[i], "view {what}: {body}");

            let new_id = format!("{c}new{i}");
            let (status, body) = app
                .call(
                    Method::POST,
                    &format!("/api/collections/{c}/records"),
                    token,
                    Some(json!({"id": new_id, "title": "created", "owner": ann_id})),
                )
                .await;
            assert_eq!(status, row.create[i], "create {what}: {body}");
            let stored = app.state.records.find_by_id(c, &new_id).await.unwrap();
            assert_eq!(stored.is_some(), status == 200, "create {what} stored?");

            let (status, body) = app
                .call(
                    Method::PATCH,
                    &format!("/api/collections/{c}/records/{id}"),
                    token,
                    Some(json!({"title": "changed"})),
                )
                .await;
            assert_eq!(status, row.update[i], "update {what}: {body}");
            let stored = app.state.records.find_by_id(c, &id).await.unwrap().unwrap();
            let expected = if status == 200 { "changed" } else { "original" };
            assert_eq!(stored["title"], expected, "update {what} stored");

            let (status, body) = app
                .call(
                    Method::DELETE,
                    &format!("/api/collections/{c}/records/{id}"),
                    token,
                    None,
                )
                .await;
            assert_eq!(status, row.delete[i], "delete {what}: {body}");
            let stored = app.state.records.find_by_id(c, &id).await.unwrap();
            assert_eq!(stored.is_none(), status == 204, "delete {what} applied?");
        }
    }

    // A refused view is indistinguishable from a missing record.
    let bob = tokens[2].as_deref();
    app.state
        .records
        .insert_system(
            "owned",
            json!({"id": "annsnote", "title": "x", "owner": ann_id})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    let hidden = app
        .call(
            Method::GET,
            "/api/collections/owned/records/annsnote",
            bob,
            None,
        )
        .await;
    let missing = app
        .call(
            Method::GET,
            "/api/collections/owned/records/nosuchnote",
            bob,
            None,
        )
        .await;
    assert_eq!(hidden, missing);
}
