//! The actix-web adapter: routes, the request middleware, JSON limits and the error
//! body. Handlers extract, make one service call and shape the response; nothing here
//! reads rows or checks rules itself. Nothing imports this module.

pub mod admin;
mod auth;
pub mod body;
mod collections;
pub mod error;
mod functions;
mod graphql;
mod health;
pub mod identity;
pub mod json;
mod metrics;
pub mod middleware;
mod openapi;
mod realtime;
mod records;

use actix_web::{HttpResponse, ResponseError, web};

pub use error::ApiError;

/// Mount every route. The caller adds the state, the JSON config and the middleware.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/health")
            .route(web::get().to(health::health))
            .route(web::head().to(health::health)),
    )
    .service(web::resource("/api/ready").route(web::get().to(health::ready)))
    .service(web::resource("/api/instances").route(web::get().to(health::instances)))
    .service(web::resource("/metrics").route(web::get().to(metrics::metrics)))
    .service(web::resource("/api/openapi.json").route(web::get().to(openapi::openapi)))
    .service(
        web::resource("/api/collections")
            .route(web::get().to(collections::list_collections))
            .route(web::post().to(collections::create_collection)),
    )
    .service(
        web::resource("/api/collections/import")
            .route(web::put().to(collections::import_collections)),
    )
    .service(
        web::resource("/api/collections/{collection}")
            .route(web::get().to(collections::view_collection))
            .route(web::patch().to(collections::update_collection))
            .route(web::delete().to(collections::delete_collection)),
    )
    .service(
        web::resource("/api/collections/{collection}/records")
            .route(web::get().to(records::list_records))
            .route(web::post().to(records::create_record)),
    )
    .service(
        web::resource("/api/collections/{collection}/records/{id}")
            .route(web::get().to(records::view_record))
            .route(web::patch().to(records::update_record))
            .route(web::delete().to(records::delete_record)),
    )
    .service(
        web::resource("/graphql")
            .route(web::post().to(graphql::post))
            .route(web::get().to(graphql::get)),
    )
    .service(web::resource("/graphql/schema.graphql").route(web::get().to(graphql::sdl)))
    .service(web::resource("/api/batch").route(web::post().to(records::batch)))
    .service(
        web::resource("/api/collections/{collection}/records/{id}/revoke-sessions")
            .route(web::post().to(auth::revoke_sessions)),
    )
    .service(web::resource("/api/mails").route(web::get().to(auth::mails)))
    .service(
        web::resource("/api/realtime")
            .route(web::get().to(realtime::connect))
            .route(web::post().to(realtime::subscribe)),
    )
    .service(
        web::resource("/api/keys")
            .route(web::get().to(auth::list_keys))
            .route(web::post().to(auth::create_key)),
    )
    .service(web::resource("/api/keys/{id}").route(web::delete().to(auth::revoke_key)))
    .service(
        web::resource("/api/functions")
            .route(web::get().to(functions::list))
            .route(web::post().to(functions::deploy)),
    )
    .service(
        web::resource("/api/functions/invocations").route(web::get().to(functions::invocations)),
    )
    .service(web::resource("/api/functions/deliveries").route(web::get().to(functions::deliveries)))
    .service(
        web::resource("/api/functions/deliveries/{id}").route(web::delete().to(functions::discard)),
    )
    .service(
        web::resource("/api/functions/deliveries/{id}/replay")
            .route(web::post().to(functions::replay)),
    )
    .service(
        web::resource("/api/functions/{name}")
            .route(web::get().to(functions::view))
            .route(web::patch().to(functions::change))
            .route(web::delete().to(functions::delete)),
    )
    .service(
        web::resource("/api/functions/{name}/{tail:.*}").route(web::route().to(functions::call)),
    );
    let auth_routes: [(&str, actix_web::Route); 12] = [
        ("auth-with-oauth2", web::post().to(auth::auth_with_oauth2)),
        (
            "auth-with-password",
            web::post().to(auth::auth_with_password),
        ),
        ("auth-refresh", web::post().to(auth::auth_refresh)),
        ("auth-logout", web::post().to(auth::auth_logout)),
        ("auth-methods", web::get().to(auth::auth_methods)),
        (
            "request-verification",
            web::post().to(auth::request_verification),
        ),
        (
            "confirm-verification",
            web::post().to(auth::confirm_verification),
        ),
        (
            "request-password-reset",
            web::post().to(auth::request_password_reset),
        ),
        (
            "confirm-password-reset",
            web::post().to(auth::confirm_password_reset),
        ),
        (
            "request-email-change",
            web::post().to(auth::request_email_change),
        ),
        (
            "confirm-email-change",
            web::post().to(auth::confirm_email_change),
        ),
        ("impersonate/{id}", web::post().to(auth::impersonate)),
    ];
    for (action, route) in auth_routes {
        cfg.service(
            web::resource(format!("/api/collections/{{collection}}/{action}")).route(route),
        );
    }
}

/// Answer for a path no route matched.
pub async fn not_found() -> HttpResponse {
    ApiError::not_found().error_response()
}
