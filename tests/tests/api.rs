//! The HTTPS API against a running controller on the rig, with real TLS
//! clients (curl and openssl s_client, as operators and monitoring use
//! them) from the client's namespace: keys and scopes, security headers,
//! no plaintext, no TLS below 1.2, no trust without the CA, a start
//! refused on unsafe key files, and no key in any log.

use std::{path::Path, process::Command};

use filter_tests::{
    controller::{ctl_bin, Controller},
    rig::SRV_CLI_IP,
    Scratch,
};
use serde_json::Value;

/// `filter-ctl ARGS`, which must succeed; its stdout.
fn ctl(args: &[&str]) -> String {
    let out = Command::new(ctl_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A certificate for the server's address and two keys, in `dir`.
fn credentials(dir: &Path) -> (String, String) {
    let d = dir.display().to_string();
    ctl(&["tls", "self-signed", "--out", &d, "--name", SRV_CLI_IP]);
    let keys = dir.join("keys.yaml").display().to_string();
    let admin = ctl(&["api-key", "add", "ops", "--scope", "admin", "--file", &keys]);
    let read = ctl(&[
        "api-key", "add", "grafana", "--scope", "read", "--file", &keys,
    ]);
    (admin.trim().to_owned(), read.trim().to_owned())
}

fn api_policy(dir: &Path) -> String {
    format!(
        "api:\n  listen: \"{SRV_CLI_IP}:8443\"\n  cert: {0}/cert.pem\n  key: {0}/key.pem\n  keys_file: {0}/keys.yaml\n  access_log: {0}/access.jsonl\n",
        dir.display()
    )
}

/// curl from the client's namespace; (exit code, headers and body).
fn curl(c: &Controller, args: &[&str]) -> (i32, String) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.rig.cli.name,
            "curl",
            "-s",
            "-i",
            "-m",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn url(path: &str) -> String {
    format!("https://{SRV_CLI_IP}:8443{path}")
}

/// (status code, body as JSON) of a trusted request with `key`.
fn call(c: &Controller, dir: &Path, key: Option<&str>, args: &[&str]) -> (u16, Value, String) {
    let ca = dir.join("cert.pem").display().to_string();
    let auth = key.map(|k| format!("Authorization: Bearer {k}"));
    let mut all = vec!["--cacert", &ca];
    if let Some(a) = &auth {
        all.extend(["-H", a]);
    }
    all.extend(args);
    let (rc, out) = curl(c, &all);
    assert_eq!(rc, 0, "curl {args:?}: {out}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        serde_json::from_str(body).unwrap_or(Value::Null),
        head.to_owned(),
    )
}

/// The value of the sample `name` (with its labels, if any) in a metrics
/// text; NaN if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn the_api_serves_tls_only_with_keys_and_scopes() {
    filter_tests::require_root();
    let scratch = Scratch::new("api");
    let dir = scratch.0.clone();
    let (admin, read) = credentials(&dir);
    let c = Controller::start(&api_policy(&dir));

    // A read key reads, with the security headers on every answer.
    let (code, s, head) = call(&c, &dir, Some(&read), &[&url("/v1/status")]);
    assert_eq!(code, 200, "{head}");
    assert_eq!(s["done"], "status");
    let head = head.to_ascii_lowercase();
    for h in [
        "strict-transport-security: max-age=",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "content-security-policy: default-src 'none'",
        "cache-control: no-store",
    ] {
        assert!(head.contains(h), "no {h} in {head}");
    }
    for path in [
        "/v1/stats",
        "/v1/lists/block",
        "/v1/lists/allow",
        "/v1/thresholds",
        "/v1/verified",
    ] {
        assert_eq!(call(&c, &dir, Some(&read), &[&url(path)]).0, 200, "{path}");
    }
    // A read key cannot write; an admin key can, audited with its name.
    let add =
        r#"{"op":"add","list":"block","net":"203.0.113.9/32","ttl_s":600,"reason":"api test"}"#;
    let (code, body, _) = call(
        &c,
        &dir,
        Some(&read),
        &["-X", "POST", "-d", add, &url("/v1/ops")],
    );
    assert_eq!(
        (code, body),
        (403, serde_json::json!({"error": "forbidden"}))
    );
    let (code, body, _) = call(
        &c,
        &dir,
        Some(&admin),
        &["-X", "POST", "-d", add, &url("/v1/ops")],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["done"], "added");
    let (_, list, _) = call(&c, &dir, Some(&read), &[&url("/v1/lists/block")]);
    assert!(list.to_string().contains("203.0.113.9/32"), "{list}");
    let audited = c
        .audit_events()
        .into_iter()
        .find(|e| e["event"] == "admin_block")
        .expect("audited");
    assert_eq!(audited["by"]["via"], "api");
    assert_eq!(audited["by"]["key"], "ops");
    // Metrics, with a read key, after a SYN flood the controller promoted.
    let f = c.flood(filter_tests::attack::Kind::Syn, "10.200.9.9", 20_000, 2);
    f.join().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let ca = dir.join("cert.pem").display().to_string();
        let auth = format!("Authorization: Bearer {read}");
        let (rc, out) = curl(&c, &["--cacert", &ca, "-H", &auth, &url("/metrics")]);
        assert_eq!(rc, 0, "{out}");
        if metric(&out, "filter_promotions_total") >= 1.0 || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(
        metrics
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "filter_promotions_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "filter_blocked_entries") >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "filter_packets_total{reason=\"rate_limited\",drops=\"true\"}"
        ) > 0.0,
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert!(
        metric(
            &metrics,
            "filter_promotions_by_reason_total{name=\"syn_flood\"}"
        ) >= 1.0,
        "{metrics}"
    );
    let cycles = metric(&metrics, "filter_controller_cycle_seconds_count");
    assert!(cycles >= 1.0, "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            "filter_controller_cycle_seconds_bucket{le=\"+Inf\"}"
        ),
        cycles
    );
    assert!(
        metric(&metrics, "filter_map_fill_ratio{map=\"sources\"}") > 0.0,
        "{metrics}"
    );
    // The Grafana dashboard asks only for metrics that exist.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/filter-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("filter_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    metrics.lines().any(|l| l.starts_with(&name)),
                    "the dashboard asks for {name}, which /metrics lacks"
                );
                asked += 1;
            }
        }
    }
    assert!(asked > 10);

    // Bad input is a JSON error without internals; unknown paths 404.
    let (code, body, _) = call(
        &c,
        &dir,
        Some(&admin),
        &["-X", "POST", "-d", "{\"op\":\"nope\"}", &url("/v1/ops")],
    );
    assert_eq!(code, 400);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("not an operation"));
    assert_eq!(call(&c, &dir, Some(&read), &[&url("/v1/nothing")]).0, 404);
    // No key, a wrong key, a key in the wrong form: 401, nothing else said.
    for key in [None, Some("fk_0000"), Some(admin.trim_start_matches("fk_"))] {
        let (code, body, head) = call(&c, &dir, key, &[&url("/v1/status")]);
        assert_eq!(
            (code, &body),
            (401, &serde_json::json!({"error": "unauthorized"})),
            "{head}"
        );
    }

    // Bodies are capped (64 KiB); a client that sends nothing is dropped.
    let big = dir.join("big.json");
    std::fs::write(
        &big,
        format!("{{\"op\":\"status\",\"pad\":\"{}\"}}", "x".repeat(100_000)),
    )
    .unwrap();
    let body = format!("@{}", big.display());
    // Asking first (`Expect: 100-continue`), as a well-behaved client
    // does: the 413 comes before any of the body is sent, so the answer
    // cannot race the server closing on a body it will not read.
    let (code, _, _) = call(
        &c,
        &dir,
        Some(&admin),
        &[
            "-X",
            "POST",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &body,
            &url("/v1/ops"),
        ],
    );
    assert_eq!(code, 413);
    let t = std::time::Instant::now();
    let idle = Command::new("ip")
        .args(["netns", "exec", &c.rig.cli.name, "bash", "-c"])
        .arg(format!(
            "timeout 20 openssl s_client -quiet -connect {SRV_CLI_IP}:8443 -CAfile {}/cert.pem \
             < <(sleep 20 >/dev/null 2>&1)",
            dir.display()
        ))
        .output()
        .unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "an idle client was kept {:?}: {}",
        t.elapsed(),
        String::from_utf8_lossy(&idle.stderr)
    );

    // A key added (or removed) while it runs counts at once.
    let keys = dir.join("keys.yaml").display().to_string();
    let late = ctl(&["api-key", "add", "late", "--scope", "read", "--file", &keys]);
    assert_eq!(
        call(&c, &dir, Some(late.trim()), &[&url("/v1/status")]).0,
        200
    );
    ctl(&["api-key", "remove", "late", "--file", &keys]);
    assert_eq!(
        call(&c, &dir, Some(late.trim()), &[&url("/v1/status")]).0,
        401
    );

    // Plaintext HTTP to the port gets no HTTP response at all.
    let (_, out) = curl(&c, &[&format!("http://{SRV_CLI_IP}:8443/v1/status")]);
    assert!(!out.contains("HTTP/"), "{out}");
    // A client that does not trust the certificate does not talk to it.
    let (rc, out) = curl(&c, &[&url("/v1/status")]);
    assert_eq!(rc, 60, "curl trusted a self-signed certificate: {out}");
    // TLS 1.1 and below are refused (the client allows them).
    for version in ["-tls1_1", "-tls1"] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &c.rig.cli.name,
                "timeout",
                "5",
                "openssl",
                "s_client",
            ])
            .args(["-connect", &format!("{SRV_CLI_IP}:8443"), version])
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Cipher is (NONE)") || text.contains("alert"),
            "{version}: {text}"
        );
    }
    // Repeated failures from one address are throttled.
    for _ in 0..10 {
        call(&c, &dir, Some("fk_wrong"), &[&url("/v1/status")]);
    }
    assert_eq!(call(&c, &dir, Some(&read), &[&url("/v1/status")]).0, 429);

    // No key and no hash in any log or output.
    let keys_text = std::fs::read_to_string(dir.join("keys.yaml")).unwrap();
    let hashes: Vec<&str> = keys_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sha256: "))
        .collect();
    // The access log: one JSON line per request, the key's name, never
    // the key.
    let access = std::fs::read_to_string(dir.join("access.jsonl")).unwrap();
    let lines: Vec<Value> = access
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 20, "{access}");
    let seen = |key: Value, status: u64| {
        lines
            .iter()
            .any(|l| l["key"] == key && l["status"] == status && l["latency_ms"].is_number())
    };
    assert!(seen("grafana".into(), 200) && seen("grafana".into(), 403));
    assert!(seen("ops".into(), 200) && seen(Value::Null, 401) && seen(Value::Null, 429));
    assert!(lines
        .iter()
        .any(|l| l["method"] == "POST" && l["path"] == "/v1/ops"));
    let logs = c.log() + &std::fs::read_to_string(&c.audit).unwrap() + &access;
    for secret in [admin.as_str(), read.as_str(), late.trim()]
        .into_iter()
        .chain(hashes)
    {
        assert!(!logs.contains(secret), "a key or hash in the logs");
    }
    assert!(!keys_text.contains(&admin) && !keys_text.contains(&read));
    drop(c);
}

#[test]
fn mutual_tls_takes_a_client_certificate_from_the_ca_and_still_a_key() {
    filter_tests::require_root();
    let scratch = Scratch::new("api-mtls");
    let dir = scratch.0.clone();
    let (_, read) = credentials(&dir);
    let client = dir.join("client");
    ctl(&[
        "tls",
        "self-signed",
        "--out",
        &client.display().to_string(),
        "--name",
        "monitoring",
    ]);
    let c = Controller::start(&format!(
        "{}  client_ca: {}/cert.pem\n",
        api_policy(&dir),
        client.display()
    ));
    let (cert, key) = (
        client.join("cert.pem").display().to_string(),
        client.join("key.pem").display().to_string(),
    );
    // With the client certificate and a key: served.
    let with = [
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
        &url("/v1/status"),
    ];
    assert_eq!(call(&c, &dir, Some(&read), &with).0, 200);
    // Without it: no TLS session, so no HTTP at all, key or not.
    let ca = dir.join("cert.pem").display().to_string();
    let auth = format!("Authorization: Bearer {read}");
    let (rc, out) = curl(&c, &["--cacert", &ca, "-H", &auth, &url("/v1/status")]);
    assert_ne!(rc, 0, "{out}");
    assert!(!out.contains("HTTP/"), "{out}");
    // With it but no key: still 401.
    assert_eq!(call(&c, &dir, None, &with).0, 401);
    // A renewed server certificate is served from the next connection on
    // (after `filter-ctl reload`, as an operator would; no restart).
    let old_ca = dir.join("old-ca.pem");
    std::fs::copy(dir.join("cert.pem"), &old_ca).unwrap();
    ctl(&[
        "tls",
        "self-signed",
        "--out",
        &dir.display().to_string(),
        "--name",
        SRV_CLI_IP,
    ]);
    c.ctl_ok(&["reload"]);
    assert_eq!(
        call(&c, &dir, Some(&read), &with).0,
        200,
        "the new certificate"
    );
    let old = old_ca.display().to_string();
    let (rc, out) = curl(
        &c,
        &[
            "--cacert",
            &old,
            "--cert",
            &cert,
            "--key",
            &key,
            &url("/v1/status"),
        ],
    );
    assert_eq!(rc, 60, "the old certificate is still served: {out}");
    drop(c);
}

#[test]
fn a_failing_access_log_is_counted_and_never_stops_the_api() {
    filter_tests::require_root();
    let scratch = Scratch::new("api-full");
    let dir = scratch.0.clone();
    let (_, read) = credentials(&dir);
    // /dev/full takes no write, even root's.
    let policy = api_policy(&dir).replace(&format!("{}/access.jsonl", dir.display()), "/dev/full");
    let c = Controller::start(&policy);
    for _ in 0..3 {
        assert_eq!(call(&c, &dir, Some(&read), &[&url("/v1/stats")]).0, 200);
    }
    let s = c.status();
    assert!(s["access_log_write_errors"].as_u64() >= Some(3), "{s}");
    assert!(
        c.ctl_ok(&["status"]).contains("ACCESS LOG FAILING"),
        "the text status says so"
    );
    drop(c);
}

#[test]
fn unsafe_or_missing_credentials_refuse_the_start() {
    filter_tests::require_root();
    let scratch = Scratch::new("api-bad");
    let dir = scratch.0.clone();
    credentials(&dir);
    let run = |policy: &str| {
        let path = dir.join("policy.yaml");
        std::fs::write(
            &path,
            format!(
                "interfaces: [lo]\npin_dir: /sys/fs/bpf/filter-api-bad\ncontrol_socket: {0}/ctl.sock\n\
                 state_dir: {0}/state\naudit: {{ path: {0}/audit.jsonl }}\n{policy}",
                dir.display()
            ),
        )
        .unwrap();
        let out = Command::new(ctl_bin())
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    use std::os::unix::fs::PermissionsExt as _;
    let keys = dir.join("keys.yaml");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = run(&api_policy(&dir));
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A key that is not the certificate's.
    let other = dir.join("other");
    ctl(&["tls", "self-signed", "--out", &other.display().to_string()]);
    let mismatched = api_policy(&dir).replace(
        &format!("{}/key.pem", dir.display()),
        &format!("{}/key.pem", other.display()),
    );
    let e = run(&mismatched);
    assert!(e.contains("do not match"), "{e}");
    let missing = api_policy(&dir).replace("cert.pem", "absent.pem");
    let e = run(&missing);
    assert!(e.contains("reading TLS certificate"), "{e}");
    // Nothing was attached meanwhile.
    assert!(!Path::new("/sys/fs/bpf/filter-api-bad").exists());
}

/// A one-thread HTTPS receiver in the client's namespace: every request's
/// head and body, answered 204.
fn receiver(
    c: &Controller,
    dir: &Path,
) -> std::sync::mpsc::Receiver<(String, String, std::time::Instant)> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let addr: std::net::SocketAddr = format!("{}:9443", filter_tests::rig::CLI_IP)
        .parse()
        .unwrap();
    let listener = c
        .rig
        .cli
        .run(move || std::net::TcpListener::bind(addr).expect("bind in client namespace"));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("recv/cert.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("recv/key.pem")).unwrap();
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, tcp) in listener.incoming().enumerate() {
            let Ok(tcp) = tcp else { return };
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if tls.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = tls.read_exact(&mut body);
            let answer: &[u8] = match n {
                0 => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                _ => b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            };
            let _ = tls.get_mut().write_all(answer);
            let _ = tls.get_mut().flush();
            let body = String::from_utf8_lossy(&body).into_owned();
            if tx.send((head, body, std::time::Instant::now())).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn alerts_go_to_an_https_webhook_only_with_the_filters_user_agent() {
    filter_tests::require_root();
    let scratch = Scratch::new("alerts");
    let dir = scratch.0.clone();
    let recv = dir.join("recv");
    ctl(&[
        "tls",
        "self-signed",
        "--out",
        &recv.display().to_string(),
        "--name",
        filter_tests::rig::CLI_IP,
    ]);
    // A plaintext webhook is refused when the policy is checked.
    let plain = dir.join("plain.yaml");
    std::fs::write(
        &plain,
        "alerts: { webhook: \"http://10.77.2.2:9443/hook\" }\n",
    )
    .unwrap();
    let out = Command::new(ctl_bin())
        .args(["policy", "check"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("alerts.webhook") && e.contains("https://"),
        "{e}"
    );

    let c = Controller::start(&format!(
        "alerts:\n  webhook: \"https://{}:9443/hook\"\n  ca: {}/cert.pem\n",
        filter_tests::rig::CLI_IP,
        recv.display()
    ));
    let alerts = receiver(&c, &dir);
    // A promotion is an alert.
    let f = c.flood(filter_tests::attack::Kind::Syn, "10.200.9.8", 20_000, 2);
    f.join().unwrap();
    let (head, body, first) = alerts
        .recv_timeout(std::time::Duration::from_secs(15))
        .expect("no alert arrived");
    // Refused the first time (503): the same alert again, after a backoff.
    let (_, again, second) = alerts
        .recv_timeout(std::time::Duration::from_secs(15))
        .expect("the alert was not retried");
    assert_eq!(again, body);
    let waited = second.duration_since(first);
    assert!(
        waited >= std::time::Duration::from_millis(800),
        "no backoff: {waited:?}"
    );
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let ua = format!("user-agent: {}", filter_ctl::api::webhook::USER_AGENT).to_ascii_lowercase();
    assert!(ua.starts_with("user-agent: filter-ctl/"));
    assert!(head.to_ascii_lowercase().contains(&ua), "{head}");
    let alert: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["event"], "promote", "{alert}");
    assert_eq!(alert["source"], "10.200.9.8/32", "{alert}");
    assert!(alert["ts"].is_string());
    drop(c);

    // A receiver that is gone never slows the control loop: alerts wait in
    // their queue, retried apart from it, and promotions go on.
    let c = Controller::start(&format!(
        "interval: 200ms\nalerts:\n  webhook: \"https://{}:9444/gone\"\n  ca: {}/cert.pem\n  queue: 4\n",
        filter_tests::rig::CLI_IP,
        recv.display()
    ));
    for (i, src) in [
        "10.200.9.1",
        "10.200.9.2",
        "10.200.9.3",
        "10.200.9.4",
        "10.200.9.5",
        "10.200.9.6",
    ]
    .iter()
    .enumerate()
    {
        let f = c.flood(filter_tests::attack::Kind::Syn, src, 20_000, 1);
        f.join().unwrap();
        let s = c.status();
        assert!(s["promotions"].as_u64() >= Some(i as u64), "{s}");
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let s = c.status();
    assert!(s["promotions"].as_u64() >= Some(6), "{s}");
    assert!(s["alerts_dropped"].as_u64() >= Some(1), "{s}");
    assert!(s["last_cycle_ms"].as_f64() < Some(1000.0), "{s}");
    drop(c);
}
