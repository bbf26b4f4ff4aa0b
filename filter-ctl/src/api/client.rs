//! The admin CLI's line to a running controller: a root-only Unix socket
//! carrying one JSON request and one JSON response per connection.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use crate::service::ops::{Request, Response};

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nobody listens on the socket.
    #[error("no controller is running (nothing listens on {0}); start one with `filter-ctl run --config FILE`")]
    NotRunning(String),
    #[error("talking to the controller on {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one request and waits for its response.
pub fn call(socket: &Path, req: &Request) -> Result<Response, CallError> {
    let path = socket.display().to_string();
    let io = |error| CallError::Io {
        path: path.clone(),
        error,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(CallError::NotRunning(path));
        }
        Err(e) => return Err(io(e)),
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(req).expect("requests serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer)
        .map_err(|e| io(std::io::Error::other(format!("bad response: {e}"))))
}
