//! The actix-web adapter: routes, the request middleware, JSON limits and the error
//! body. Handlers extract, make one service call and shape the response; nothing here
//! reads rows or checks rules itself. Nothing imports this module.

pub mod error;
mod health;
pub mod json;
mod metrics;
pub mod middleware;

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
    .service(web::resource("/metrics").route(web::get().to(metrics::metrics)));
}

/// Answer for a path no route matched.
pub async fn not_found() -> HttpResponse {
    ApiError::not_found().error_response()
}
