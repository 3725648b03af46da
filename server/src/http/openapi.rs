//! `GET /api/openapi.json`, built from the live schema by [`crate::openapi`].

use actix_web::{HttpResponse, web};

use crate::AppState;

pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.schema.snapshot();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.document(&snapshot))
}
