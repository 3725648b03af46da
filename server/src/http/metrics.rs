//! `/metrics`: every Basalt metric in the Prometheus (OpenMetrics) text format.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::error::ApiError;
use crate::AppState;

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.encode().map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .body(text))
}
