//! A JSON endpoint that reads records as its caller: `GET /api/functions/posts-api/latest?n=3`
//! answers the caller's newest posts' titles (the collection's rules apply, as over REST)
//! and who asked.
//!
//! Deploy: `basalt functions deploy posts_api.wasm --name posts-api --trigger http`

use basalt_functions::context::Identity;
use basalt_functions::records::{self, Acting, ListQuery};
use basalt_functions::{Function, Request, Response, json};

struct PostsApi;

impl Function for PostsApi {
    fn http(request: Request) -> Response {
        if request.method != "GET" || request.path != "/latest" {
            return Response::json(404, &json!({"message": "Try GET /latest?n=3."}));
        }
        let n = request
            .param("n")
            .and_then(|n| n.parse().ok())
            .unwrap_or(3u32)
            .clamp(1, 50);
        let query = ListQuery {
            filter: None,
            sort: Some("-created".into()),
            page: Some(1),
            per_page: Some(n),
        };
        let caller = match basalt_functions::context::caller() {
            Identity::Anonymous => "anonymous".to_owned(),
            Identity::User(user) => format!("{}/{}", user.collection, user.id),
            Identity::Superuser(id) => format!("superuser/{id}"),
            Identity::ApiKey(name) | Identity::Service(name) => format!("key/{name}"),
        };
        match records::list(Acting::Caller, "posts", &query) {
            Ok(page) => {
                let titles: Vec<_> = page.items.iter().map(|p| p["title"].clone()).collect();
                Response::json(
                    200,
                    &json!({"caller": caller, "total": page.total_items, "titles": titles}),
                )
            }
            Err(e) => Response::json(e.status, &json!({"code": e.code, "message": e.message})),
        }
    }
}

basalt_functions::export!(PostsApi);
