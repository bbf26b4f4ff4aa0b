//! The HTTPS API: the same service as the Unix socket, over TLS 1.2/1.3
//! only (rustls' safe defaults) with bearer API keys. There is no plaintext
//! listener: a plaintext request to the port fails the TLS handshake and
//! gets no HTTP response. Every connection is its own task with timeouts
//! on the handshake and the request head, and request bodies are capped,
//! so a slow or hostile client never delays the control loop.
//!
//! Endpoints (JSON in and out):
//! - `GET /v1/status`, `/v1/stats`, `/v1/lists/block`, `/v1/lists/allow`,
//!   `/v1/thresholds`, `/v1/verified`: read scope;
//! - `GET /metrics`: Prometheus text, read scope;
//! - `POST /v1/ops` with one operation of the service (`{"op": "add", …}`,
//!   as the Unix socket takes them): read scope for reads, admin scope for
//!   changes. So the API cannot drift from the service.
//!
//! Errors are `{"error": "..."}` with no internals; 401 and 403 say nothing
//! else. The certificate, its key and the key file are read again when one
//! of them changes (checked at each new connection): a renewed certificate
//! or a new key needs no restart, and a file that no longer reads leaves
//! the previous ones in force. A client that fails authentication 10 times in a minute gets 429
//! for the rest of that minute.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    api::keys::{KeyFile, Scope},
    kernel::maps::ListKind,
    service::{
        audit::AuditLog,
        ops::{Caller, ErrorKind, Op, OpError},
        Service,
    },
};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
const MAX_BODY: usize = 64 * 1024;
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The TLS side: the certificate chain and key from PEM files, and with
/// `client_ca` clients must present a certificate it issued. A missing,
/// unreadable or mismatched file is an error (never a plaintext fallback).
pub fn tls_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!("TLS certificate {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS key {}", key.display()))?;
    // ring, not aws-lc-rs: no C/cmake build on the hosts that build this.
    // rustls marks it deprecated for lacking post-quantum key exchange;
    // TLS 1.2 and 1.3 with the classical groups are what it offers.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading api.client_ca {}", ca.display()))?
            {
                roots
                    .add(c.with_context(|| format!("api.client_ca {}", ca.display()))?)
                    .with_context(|| format!("api.client_ca {}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .with_context(|| format!("api.client_ca {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Failed authentications per client address.
#[derive(Default)]
struct Throttle(Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl Throttle {
    fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.0.lock().expect("throttle lock");
        matches!(map.get(&ip), Some((n, since)) if *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    fn failed(&self, ip: IpAddr) {
        let mut map = self.0.lock().expect("throttle lock");
        map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        let e = map.entry(ip).or_insert((0, Instant::now()));
        e.0 += 1;
    }
}

/// The certificate, key and API keys in force, and the files' times they
/// were read at.
pub struct Credentials {
    tls: TlsAcceptor,
    keys: KeyFile,
    stamps: Vec<Option<SystemTime>>,
}

impl Credentials {
    /// Reads everything; any fault is an error (the start is refused).
    pub fn load(api: &crate::policy::Api) -> anyhow::Result<Credentials> {
        let stamps = stamps(api);
        let keys = KeyFile::load(&api.keys_file, false)?;
        if keys.keys.is_empty() {
            log::warn!(
                "api: {} holds no key: every request will be refused \
                 (filter-ctl api-key add NAME --scope read|admin)",
                api.keys_file.display()
            );
        }
        Ok(Credentials {
            tls: tls_acceptor(&api.cert, &api.key, api.client_ca.as_deref())?,
            keys,
            stamps,
        })
    }

    pub fn key_count(&self) -> usize {
        self.keys.keys.len()
    }
}

fn stamps(api: &crate::policy::Api) -> Vec<Option<SystemTime>> {
    [
        Some(&api.cert),
        Some(&api.key),
        Some(&api.keys_file),
        api.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

struct Shared {
    service: Service,
    access: Mutex<AuditLog>,
    /// Its write errors, for the controller's `status`.
    access_errors: Arc<std::sync::atomic::AtomicU64>,
    api: crate::policy::Api,
    credentials: Mutex<Arc<Credentials>>,
    throttle: Throttle,
}

impl Shared {
    /// The credentials for a new connection: read again if a file changed
    /// since (a renewed certificate, a key added or removed); a file that
    /// no longer reads keeps the old ones in force, and says so.
    fn credentials(&self) -> Arc<Credentials> {
        let mut current = self.credentials.lock().expect("credentials lock");
        if stamps(&self.api) != current.stamps {
            match Credentials::load(&self.api) {
                Ok(new) => {
                    log::info!(
                        "api: certificate or keys changed: reloaded ({} keys)",
                        new.key_count()
                    );
                    *current = Arc::new(new);
                }
                Err(e) => {
                    log::error!(
                        "api: reloading credentials: {e:#}; the previous ones stay in force"
                    );
                    // Not again for every connection until the files change.
                    *current = Arc::new(Credentials {
                        tls: current.tls.clone(),
                        keys: current.keys.clone(),
                        stamps: stamps(&self.api),
                    });
                }
            }
        }
        current.clone()
    }
}

/// Accepts connections until the task is dropped, each on its own task.
pub async fn serve(
    listener: TcpListener,
    api: crate::policy::Api,
    credentials: Credentials,
    (access, access_errors): (AuditLog, Arc<std::sync::atomic::AtomicU64>),
    service: Service,
) {
    let shared = Arc::new(Shared {
        service,
        access: Mutex::new(access),
        access_errors,
        api,
        credentials: Mutex::new(Arc::new(credentials)),
        throttle: Throttle::default(),
    });
    // The access log's retention: now and hourly.
    let pruner = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let retention = pruner.api.access_retention.0;
            let mut log = pruner.access.lock().expect("access log lock");
            if let Err(e) = log.prune(retention, SystemTime::now()) {
                log::error!("pruning access log {}: {e}", log.path().display());
            }
        }
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("API: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let creds = shared.credentials();
        tokio::spawn(async move {
            let accept = creds.tls.accept(tcp);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                Ok(Ok(s)) => s,
                // Plaintext, old TLS, an untrusting client: no HTTP at all.
                Ok(Err(e)) => return log::debug!("API: TLS handshake with {peer}: {e}"),
                Err(_) => return log::debug!("API: TLS handshake with {peer} timed out"),
            };
            let svc = hyper::service::service_fn(move |req| {
                let (shared, creds) = (shared.clone(), creds.clone());
                async move {
                    let (started, method) = (Instant::now(), req.method().to_string());
                    let path = req.uri().path().chars().take(256).collect::<String>();
                    let (response, key) = handle(&shared, &creds.keys, peer, req).await;
                    let mut line = serde_json::Map::new();
                    line.insert("client".into(), peer.ip().to_string().into());
                    line.insert(
                        "key".into(),
                        key.map_or(serde_json::Value::Null, Into::into),
                    );
                    line.insert("method".into(), method.into());
                    line.insert("path".into(), path.into());
                    line.insert("status".into(), response.status().as_u16().into());
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    line.insert("latency_ms".into(), ((ms * 1e3).round() / 1e3).into());
                    let mut log = shared.access.lock().expect("access log lock");
                    log.write_at(line, SystemTime::now());
                    shared
                        .access_errors
                        .store(log.write_errors(), std::sync::atomic::Ordering::Relaxed);
                    drop(log);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, conn).await;
        });
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let set = |h: &mut hyper::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_TYPE, "application/json");
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    );
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotListed => StatusCode::NOT_FOUND,
        ErrorKind::BadInput => StatusCode::BAD_REQUEST,
        ErrorKind::Full => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Denied | ErrorKind::Kernel => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::NotRunning | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The operation a request asks for.
async fn operation(req: Request<Incoming>) -> Result<Op, Response<Full<Bytes>>> {
    let not_found = || error(StatusCode::NOT_FOUND, "no such endpoint");
    let get = |op: Op| match req.method() == Method::GET {
        true => Ok(op),
        false => Err(error(StatusCode::METHOD_NOT_ALLOWED, "use GET")),
    };
    match req.uri().path() {
        "/v1/status" => get(Op::Status),
        "/v1/stats" => get(Op::Stats),
        "/v1/lists/block" => get(Op::List {
            list: ListKind::Block,
        }),
        "/v1/lists/allow" => get(Op::List {
            list: ListKind::Allow,
        }),
        "/v1/thresholds" => get(Op::Thresholds),
        "/v1/verified" => get(Op::Verified),
        "/v1/ops" if req.method() == Method::POST => {
            // A declared length over the cap is refused before any of the
            // body is read (a client sending `Expect: 100-continue` then
            // never sends it); an undeclared one is cut at the cap.
            let declared = req
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > MAX_BODY) {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large",
                ));
            }
            let body = Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("not an operation: {e}")))
        }
        "/v1/ops" => Err(error(StatusCode::METHOD_NOT_ALLOWED, "use POST")),
        _ => Err(not_found()),
    }
}

/// The answer, and the name of the key that was used (for the access log).
async fn handle(
    shared: &Shared,
    keys: &KeyFile,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (Response<Full<Bytes>>, Option<String>) {
    let ip = peer.ip();
    if shared.throttle.blocked(ip) {
        let r = error(StatusCode::TOO_MANY_REQUESTS, "too many failed attempts");
        return (r, None);
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(key) = presented.and_then(|k| keys.find(k)) else {
        shared.throttle.failed(ip);
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return (r, None);
    };
    let (name, scope) = (key.name.clone(), key.scope);
    let who = Caller::Api {
        key: name.clone(),
        addr: ip.to_string(),
    };
    let answer = if req.uri().path() == "/metrics" {
        metrics(shared, who).await
    } else {
        match operation(req).await {
            Err(r) => r,
            Ok(op) if op.edits() && scope != Scope::Admin => {
                error(StatusCode::FORBIDDEN, "forbidden")
            }
            Ok(op) => match shared.service.call(who, op).await {
                Ok(done) => match serde_json::to_string(&done) {
                    Ok(body) => json(StatusCode::OK, body),
                    Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                },
                Err(e) => answer_error(&e),
            },
        }
    };
    (answer, Some(name))
}

/// `/metrics` (read scope): one `status` and one `stats` per scrape.
async fn metrics(shared: &Shared, who: Caller) -> Response<Full<Bytes>> {
    use crate::service::ops::Done;
    let status = shared.service.call(who.clone(), Op::Status).await;
    let stats = shared.service.call(who, Op::Stats).await;
    let (status, stats) = match (status, stats) {
        (Ok(Done::Status(a)), Ok(Done::Stats(b))) => (a, b),
        (Err(e), _) | (_, Err(e)) => return answer_error(&e),
        _ => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let access_errors = shared
        .access
        .lock()
        .expect("access log lock")
        .write_errors();
    let mut text = super::metrics::render(&status, &stats);
    super::metrics::append_access_errors(&mut text, access_errors);
    let mut r = json(StatusCode::OK, text);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::metrics::CONTENT_TYPE),
    );
    r
}

fn answer_error(e: &OpError) -> Response<Full<Bytes>> {
    // The operator's message (what was wrong with the request), not the
    // kernel's chain of causes.
    let message = match e.kind {
        ErrorKind::Denied | ErrorKind::Kernel => "the kernel refused the operation".to_owned(),
        _ => e.to_string(),
    };
    error(status_of(e.kind), &message)
}
