//! The SDK for Basalt functions: the WIT world in `wit/` and guest helpers so that a
//! function is a plain Rust fn built for `wasm32-wasip2`. The world and helpers arrive
//! with the functions issue; this crate holds them.
