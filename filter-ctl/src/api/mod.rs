//! Transports to the service: today the client side of the root-only Unix
//! socket.

pub mod client;
