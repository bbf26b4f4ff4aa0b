//! The admin CLI's line to a running controller: a root-only Unix socket
//! carrying one JSON request and one JSON response per connection.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    GetThresholds,
    /// `value: None` drops the override (back to the policy's value).
    SetThreshold {
        name: String,
        value: Option<u64>,
    },
    Reload,
    Block {
        net: String,
        ttl_s: Option<u64>,
        reason: String,
    },
    Unblock {
        net: String,
    },
    Allow {
        net: String,
        ttl_s: Option<u64>,
        reason: String,
    },
    Disallow {
        net: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }

    pub fn err(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            data: serde_json::Value::Null,
        }
    }
}

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
