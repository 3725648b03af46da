//! Basalt's admin web UI, served at `/_/` by the binary itself: askama templates, CSS,
//! a small hand-written script and the view models that feed them. No npm at build or
//! run time. The pages arrive with the admin UI issue; this crate holds them.
