//! Transports to the service: the root-only Unix socket (`unix`, the
//! server side; `client`, the CLI's side).

pub mod client;
pub mod unix;
