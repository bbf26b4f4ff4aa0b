//! The one service: the vocabulary of admin operations (`ops`), the code
//! that applies them to the maps (`core`, also run offline by the CLI), the
//! controller's life-cycle (`controller`) and tick (`monitor`), its state
//! and its audit log. Transports reach it through a [`Service`] handle.

pub mod audit;
pub mod controller;
pub mod core;
mod monitor;
pub mod ops;
mod reload;
pub mod state;
mod verification;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use ops::{Caller, Done, ErrorKind, Op, OpError};

/// An operation and where its answer goes: what a transport hands the
/// control loop. The loop answers between cycles and never waits on the
/// client; the transport owns the connection and its timeouts.
pub struct Call {
    pub who: Caller,
    pub op: Op,
    pub reply: oneshot::Sender<Result<Done, OpError>>,
}

/// How long an answer may take (a reload re-attaches interfaces).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A cheap, cloneable handle on the running controller: what every
/// transport holds.
#[derive(Clone)]
pub struct Service {
    tx: mpsc::Sender<Call>,
}

impl Service {
    /// A handle and the receiving end the control loop reads.
    pub fn channel(queued: usize) -> (Service, mpsc::Receiver<Call>) {
        let (tx, rx) = mpsc::channel(queued);
        (Service { tx }, rx)
    }

    /// Applies `op` in the control loop and waits for its answer.
    pub async fn call(&self, who: Caller, op: Op) -> Result<Done, OpError> {
        let stopping = || OpError::new(ErrorKind::Unavailable, "the controller is stopping");
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Call { who, op, reply })
            .await
            .map_err(|_| stopping())?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopping()),
            Err(_) => Err(OpError::new(
                ErrorKind::Unavailable,
                "the controller did not answer in time",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
