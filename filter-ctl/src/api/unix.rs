//! The root-only Unix socket the admin CLI talks to: one JSON request and
//! one JSON response per connection. Every connection is its own task with
//! a bounded, timed read and a timed write, so a slow, stuck or hostile
//! local client never delays the control loop or another client: the loop
//! only ever sees a complete request, through the [`Service`] handle.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::service::{
    ops::{Caller, ErrorKind, Op, OpError, Reply},
    Service,
};

/// How long a client may take to send its request, and to take its answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// Binds the control socket (mode 0600). A missing parent directory is
/// created 0700; an existing one is left exactly as it is (it may be a
/// shared directory). A stale socket (no listener) is replaced; a live one
/// means another controller runs, and anything that is not a socket is
/// refused, never deleted.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "another controller is already listening on {}",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket: refusing to replace it (set control_socket to another path)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections until the task is dropped, each on its own task.
pub async fn serve(listener: UnixListener, service: Service) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, service.clone()));
            }
            Err(e) => {
                log::warn!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection: read the request (bounded, timed), hand it to the
/// service, write the answer (timed). Whatever the client does, the task
/// ends.
async fn connection(stream: UnixStream, service: Service) {
    // The socket is 0600 root, so this is root; recorded for the audit.
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let read = tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line)).await;
    let bad = |m: String| Err(OpError::new(ErrorKind::BadInput, m));
    let result = match read {
        Ok(Ok(_)) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST => {
            bad(format!("request longer than {MAX_REQUEST} bytes"))
        }
        Ok(Ok(_)) => match serde_json::from_str::<Op>(&line) {
            Ok(op) => service.call(Caller::Socket { uid }, op).await,
            Err(e) => bad(format!("bad request: {e}")),
        },
        Ok(Err(e)) => bad(format!("reading request: {e}")),
        Err(_) => bad("timed out reading the request".into()),
    };
    let mut out = serde_json::to_string(&Reply::from(result)).expect("replies serialize");
    out.push('\n');
    let _ = tokio::time::timeout(CLIENT_TIMEOUT, write.write_all(out.as_bytes())).await;
}
