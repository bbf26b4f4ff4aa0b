//! Transports to the service: the root-only Unix socket (`unix`, the
//! server side; `client`, the CLI's side) and the HTTPS API (`https`, with
//! its API keys in `keys` and `/metrics` in `metrics`), and the alerts'
//! webhook (`webhook`).

pub mod client;
pub mod https;
pub mod keys;
pub mod metrics;
pub mod unix;
pub mod webhook;
