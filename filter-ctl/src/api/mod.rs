//! Transports to the service: the root-only Unix socket (`unix`, the
//! server side; `client`, the CLI's side) and the HTTPS API (`https`, with
//! its API keys in `keys`).

pub mod client;
pub mod https;
pub mod keys;
pub mod metrics;
pub mod unix;
