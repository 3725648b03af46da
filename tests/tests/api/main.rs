//! The one integration test binary: every black-box suite is a module here, so the
//! whole run links once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod admin;
mod api_keys;
mod auth;
mod auth_flows;
mod cli;
mod collections;
mod db;
mod errors;
mod events;
mod faults;
mod filter;
mod functions;
mod graphql;
mod hooks;
mod http_basics;
mod hygiene;
mod oauth2;
mod openapi;
mod pipeline;
mod rate_limits;
mod realtime;
mod records_read;
mod records_write;
mod rules;
mod scaleout;
mod sdk;
mod security;
mod serve;
mod triggers;
