//! The one integration test binary: every black-box suite is a module here, so the
//! whole run links once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod auth;
mod cli;
mod collections;
mod db;
mod filter;
mod http_basics;
mod hygiene;
mod records_read;
mod records_write;
mod sdk;
mod serve;
