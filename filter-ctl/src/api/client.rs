//! The typed client of the control socket: one [`Op`] out, one
//! `Result<Done, OpError>` back, one JSON line each way per connection.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::service::ops::{Done, ErrorKind, Op, OpError, Reply};

const TIMEOUT: Duration = Duration::from_secs(35);

/// The CLI's line to a running controller.
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_owned(),
        }
    }

    /// Sends `op` and waits for its answer. Nobody listening is
    /// [`ErrorKind::NotRunning`]; a broken exchange is
    /// [`ErrorKind::Unavailable`] with its cause.
    pub fn call(&self, op: &Op) -> Result<Done, OpError> {
        let path = self.socket.display().to_string();
        let broken = |e: std::io::Error| {
            OpError::kernel(
                anyhow::Error::new(e).context(format!("talking to the controller on {path}")),
            )
            .with_kind(ErrorKind::Unavailable)
        };
        let mut stream = match UnixStream::connect(&self.socket) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(OpError::new(
                    ErrorKind::NotRunning,
                    format!("no controller is running (nothing listens on {path}); start one with `filter-ctl run --config FILE`"),
                ));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                return Err(OpError::kernel(
                    anyhow::Error::new(e).context(format!("connecting to {path}")),
                ));
            }
            Err(e) => return Err(broken(e)),
        };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(broken)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(broken)?;
        let mut line = serde_json::to_string(op).expect("operations serialize");
        line.push('\n');
        stream.write_all(line.as_bytes()).map_err(broken)?;
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .map_err(broken)?;
        let reply: Reply = serde_json::from_str(&answer)
            .map_err(|e| broken(std::io::Error::other(format!("unreadable reply: {e}"))))?;
        reply.into()
    }
}
