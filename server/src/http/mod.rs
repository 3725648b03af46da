//! The actix-web adapter: routes, the request middleware, JSON limits and the error
//! body. Handlers extract, make one service call and shape the response; nothing here
//! reads rows or checks rules itself. Nothing imports this module.

mod auth;
pub mod body;
mod collections;
pub mod error;
mod health;
pub mod identity;
pub mod json;
mod metrics;
pub mod middleware;
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
    .service(web::resource("/metrics").route(web::get().to(metrics::metrics)))
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
    .service(web::resource("/api/batch").route(web::post().to(records::batch)))
    .service(
        web::resource("/api/collections/{collection}/auth-with-password")
            .route(web::post().to(auth::auth_with_password)),
    );
}

/// Answer for a path no route matched.
pub async fn not_found() -> HttpResponse {
    ApiError::not_found().error_response()
}
