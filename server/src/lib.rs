//! Basalt's server: a self-hostable backend-as-a-service in one binary.
//!
//! Modules are nouns, each owning its data behind a small service type (DESIGN.md §1);
//! `http` is a thin adapter on top and nothing imports it. [`App::build`] is the one
//! way to start the server, used by the binary and by the test harness alike.

mod app;
pub mod auth;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod db;
pub mod errors;
pub mod events;
pub mod filter;
pub mod functions;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod mail;
pub mod openapi;
pub mod password;
pub mod ratelimit;
pub mod realtime;
pub mod records;
pub mod schema;
pub mod telemetry;
pub mod validation;

pub use app::{App, AppState, Core, Services, StartError};

/// Make ring rustls' process-wide crypto provider (the one lapin and lettre use too),
/// so every TLS client in the process can be built. Idempotent.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
