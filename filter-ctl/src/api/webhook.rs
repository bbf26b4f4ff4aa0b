//! Alerts to a webhook: each alert-worthy audit record (a promotion, a
//! verification switch, a full block list, a lost interface) POSTed as
//! JSON to an `https://` URL, its certificate always verified (against the
//! system's CAs, or `alerts.ca`), with a User-Agent naming the filter and
//! its version. Delivery runs on its own task from a bounded queue the
//! control loop never waits on; a failed POST is retried with backoff
//! (1, 2, 4, 8 s), then given up and logged.

use std::{sync::Arc, time::Duration};

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Bytes, header, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject as _, CertificateDer, ServerName};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::policy::Alerts;

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("filter-ctl/", env!("CARGO_PKG_VERSION"));
const TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF: [u64; 4] = [1, 2, 4, 8];

/// Where and how alerts go.
pub struct Webhook {
    uri: Uri,
    host: String,
    port: u16,
    tls: TlsConnector,
}

impl Webhook {
    /// Checks the URL (https only) and builds the TLS client.
    pub fn new(alerts: &Alerts) -> anyhow::Result<Webhook> {
        let uri: Uri = alerts
            .webhook
            .parse()
            .with_context(|| format!("alerts.webhook {:?}", alerts.webhook))?;
        if uri.scheme_str() != Some("https") {
            bail!("alerts.webhook must be https://, got {}", alerts.webhook);
        }
        let host = uri.host().context("alerts.webhook has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let mut roots = rustls::RootCertStore::empty();
        match &alerts.ca {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("reading alerts.ca {}", ca.display()))?
                {
                    roots
                        .add(cert.with_context(|| format!("alerts.ca {}", ca.display()))?)
                        .with_context(|| format!("alerts.ca {}", ca.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        if roots.is_empty() {
            bail!("alerts: no CA to verify the webhook's certificate with (set alerts.ca)");
        }
        // See https.rs on ring.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Webhook {
            uri,
            host,
            port,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// One POST; Ok if the receiver answered 2xx.
    async fn post(&self, body: &str) -> anyhow::Result<()> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let name = ServerName::try_from(self.host.clone())?;
        let tls = self.tls.connect(name, tcp).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let req = Request::post(path)
            .header(
                header::HOST,
                self.uri.authority().map_or("", |a| a.as_str()),
            )
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if !status.is_success() {
            bail!("the receiver answered {status}");
        }
        Ok(())
    }

    /// Delivers alerts until the queue closes.
    pub async fn deliver(self, mut queue: mpsc::Receiver<serde_json::Value>) {
        while let Some(alert) = queue.recv().await {
            let body = alert.to_string();
            let mut attempt = 0;
            loop {
                match tokio::time::timeout(TIMEOUT, self.post(&body)).await {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) if attempt < BACKOFF.len() => {
                        log::warn!("alert to {}: {e:#}; retrying", self.uri);
                    }
                    Err(_) if attempt < BACKOFF.len() => {
                        log::warn!("alert to {}: timed out; retrying", self.uri);
                    }
                    _ => {
                        log::error!(
                            "alert to {} given up after {} attempts",
                            self.uri,
                            attempt + 1
                        );
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(BACKOFF[attempt])).await;
                attempt += 1;
            }
        }
    }
}
