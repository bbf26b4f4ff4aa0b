//! The controller: the admin operations' vocabulary (`ops`), the control
//! loop and the operations themselves (`controller`), its state and its
//! audit log.

pub mod audit;
pub mod controller;
pub mod ops;
pub mod state;
