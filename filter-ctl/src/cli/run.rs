use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Global;
use crate::{
    api::{https, unix},
    service::{
        controller::{self, RunOptions},
        Service,
    },
};

/// Requests waiting for the control loop at most; more wait to be queued.
const QUEUED_CALLS: usize = 64;

/// Run the controller: attach per the policy, promote offenders, serve the
/// admin CLI.
///
/// Loads and validates the policy (nothing is touched if it is invalid),
/// attaches the filter to its interfaces (re-adopting pinned links and maps
/// left by an earlier run), then every interval reads the per-source
/// counters and blocks sources over a threshold. SIGHUP or `filter-ctl
/// reload` re-reads the policy; SIGTERM/SIGINT stop the controller, leaving
/// the filter attached unless the policy says `detach_on_exit: true`.
///
/// Example: filter-ctl run --config /etc/filter/policy.yaml
#[derive(Debug, Args)]
pub struct Run {
    /// Policy file (see `filter-ctl policy defaults`).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Also attach to this interface (repeatable), beside the policy's.
    #[arg(short, long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
}

impl Run {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let opts = RunOptions {
                policy_path: self.config,
                interfaces: self.interfaces,
                pin_dir: g.pin_dir.clone(),
                socket: g.socket.clone(),
                access_errors: Default::default(),
            };
            let policy = opts.load_policy()?;
            // The socket first: a second controller must fail before it
            // touches the maps or the links of the first.
            let socket = policy.control_socket.clone();
            let listener = unix::bind(&socket)?;
            let (service, calls) = Service::channel(QUEUED_CALLS);
            // The HTTPS API, if configured: everything it needs is checked
            // before anything is attached, and any fault stops the start
            // (there is no plaintext fallback).
            let api = match &policy.api {
                Some(api) => {
                    let creds = https::Credentials::load(api)?;
                    let access = crate::service::audit::AuditLog::open(&api.access_log)
                        .with_context(|| {
                            format!("opening access log {}", api.access_log.display())
                        })?;
                    let tcp = tokio::net::TcpListener::bind(api.listen)
                        .await
                        .with_context(|| format!("api: listening on {}", api.listen))?;
                    log::info!("HTTPS API on {} ({} keys)", api.listen, creds.key_count());
                    Some(tokio::spawn(https::serve(
                        tcp,
                        api.clone(),
                        creds,
                        (access, opts.access_errors.clone()),
                        service.clone(),
                    )))
                }
                None => None,
            };
            // Alerts: checked before anything is attached, like the API.
            let (alerts, deliver) = match &policy.alerts {
                Some(a) => {
                    let hook = crate::api::webhook::Webhook::new(a)?;
                    let (tx, rx) = tokio::sync::mpsc::channel(a.queue);
                    log::info!("alerts to {}", a.webhook);
                    (Some(tx), Some(tokio::spawn(hook.deliver(rx))))
                }
                None => (None, None),
            };
            let server = tokio::spawn(unix::serve(listener, service));
            let result = controller::run(opts, policy, calls, alerts).await;
            if let Some(d) = deliver {
                d.abort();
            }
            server.abort();
            if let Some(api) = api {
                api.abort();
            }
            let _ = std::fs::remove_file(&socket);
            result
        })
    }
}
