//! A relay with a certificate from a private CA (issue 12): the agent trusts
//! that CA when `relay_ca_file` (config.toml, managed config) or
//! `--relay-ca-file` names it — besides the OS trust store, for the relay
//! only — and fails in one line naming the certificate problem when it does
//! not. The CA and the relay's certificate for 127.0.0.1 are made at test time
//! (rcgen); the relay is the real binary serving TLS (`serve --tls-cert
//! --tls-key`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod agent_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use agent_support::*;
use link_peeler::demo::lab::Lab;
use link_peeler_agent::client::RelayClient;
use link_peeler_agent::credentials::Keychain;
use link_peeler_wire::client::{ExtraRoots, REQUEST_TIMEOUT, RelayError, SignedClient};
use link_peeler_wire::protocol::{Conclusion, EnrollRequest, FetchRequest, Job, JobStatus, paths};
use link_peeler_wire::signing::Signer;
use reqwest::Method;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use url::Url;

/// A private CA and a server certificate for 127.0.0.1 and localhost that it issued.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    roots: ExtraRoots,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Link Peeler test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "relay.test");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server.signed_by(&key, &issuer).unwrap();

    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("relay-cert.pem"),
        key: dir.join("relay-key.pem"),
        roots: ExtraRoots::from_pem(ca_cert.pem().as_bytes()).unwrap(),
        server_cert: cert.der().clone(),
        server_key: key.serialize_der(),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// The real relay binary serving TLS on 127.0.0.1:0 with the test certificate.
async fn start_tls_relay(dir: &Path, pki: &Pki) -> (Relay, String) {
    let db = dir.join("relay.db");
    let mut cmd = tokio::process::Command::new(relay_bin());
    cmd.args(["serve", "--db"])
        .arg(&db)
        .args(["--listen", "127.0.0.1:0", "--json", "--tls-cert"])
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.key);
    let log = std::fs::File::create(dir.join("relay.stderr")).unwrap();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn relay");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("relay printed its address")
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "relay said nothing: {}",
                std::fs::read_to_string(dir.join("relay.stderr")).unwrap_or_default()
            )
        });
    let v: serde_json::Value = serde_json::from_str(&first).expect("relay --json line");
    let addr: SocketAddr = v["listen"].as_str().unwrap().parse().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let relay = Relay {
        proc: Proc {
            child: Some(child),
            name: "relay (tls)".into(),
        },
        addr,
        db,
    };
    (relay, format!("https://127.0.0.1:{}", addr.port()))
}

/// An API client for the TLS relay that trusts the test CA.
struct Api {
    client: SignedClient,
}

impl Api {
    fn new(relay: &Relay, url: &str, roots: &ExtraRoots) -> Api {
        let (id, secret) = api_key(relay);
        let client = SignedClient::with_roots(
            Url::parse(url).unwrap(),
            Some(Signer::new(id, secret.into_bytes())),
            "agent-tls-test",
            Some(roots),
        )
        .unwrap();
        Api { client }
    }

    async fn submit(&self, key: &str, tracking_url: &str) -> Job {
        let body = serde_json::to_vec(&FetchRequest {
            idempotency_key: key.into(),
            tracking_url: tracking_url.into(),
            source: None,
            row_id: None,
            options: None,
        })
        .unwrap();
        let url = self.client.url(paths::LINKS_FETCH);
        let answer = self
            .client
            .send(Method::POST, url, body, REQUEST_TIMEOUT)
            .await
            .unwrap();
        answer.json("job").unwrap()
    }

    async fn finished(&self, job_id: &str) -> Job {
        wait_for("the job to finish", || async {
            let url = self
                .client
                .url_with_segments(&["api", "links", "jobs", job_id]);
            let job: Job = self
                .client
                .send(Method::GET, url, vec![], REQUEST_TIMEOUT)
                .await
                .unwrap()
                .json("job")
                .unwrap();
            matches!(job.status, JobStatus::Done | JobStatus::Failed).then_some(job)
        })
        .await
    }
}

/// Enrolls over HTTPS trusting `roots` (as `link-peeler enroll --relay-ca-file` does).
async fn enroll_https(relay: &Relay, url: &str, roots: &ExtraRoots) -> (String, String) {
    let client = RelayClient::with_roots(
        link_peeler_agent::config::relay_url(url).unwrap(),
        None,
        Some(roots),
    )
    .unwrap();
    let r = client
        .enroll(&EnrollRequest {
            code: enrollment_code(relay),
            name: Some("tls-agent".into()),
            platform: Some("linux".into()),
            version: Some("test".into()),
        })
        .await
        .expect("enroll over https with the CA");
    (r.device_id, r.device_secret)
}

/// A one-page HTTPS site on 127.0.0.1 with a certificate from the test CA:
/// what the resolver must *not* trust just because the relay's CA is set.
async fn https_site(pki: &Pki) -> SocketAddr {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.server_key.clone().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.server_cert.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_ne!(code, 0, "must fail: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.to_lowercase().contains(needle),
        "{needle:?} not in {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_trusts_the_relay_ca_it_is_given_for_the_relay_only() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path());
    let (relay, url) = start_tls_relay(tmp.path(), &pki).await;
    let lab = Lab::start().await.unwrap();
    let api = Api::new(&relay, &url, &pki.roots);

    // Without the CA the relay's certificate is refused, and the failure is classified as TLS.
    let plain =
        RelayClient::new(link_peeler_agent::config::relay_url(&url).unwrap(), None).unwrap();
    match plain.health().await {
        Err(RelayError::Unreachable {
            tls: true, detail, ..
        }) => assert!(detail.to_lowercase().contains("certificate"), "{detail}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    let (device, secret) = enroll_https(&relay, &url, &pki.roots).await;
    let creds = env_creds(&device, &secret);

    // config.toml names the CA, relative to the config file.
    let home = AgentHome::new(tmp.path(), "ca");
    std::fs::copy(&pki.ca, home.dir.join("relay-ca.pem")).unwrap();
    home.write_config(&format!(
        "relay = \"{url}\"\nrelay_ca_file = \"relay-ca.pem\"\npoll_wait_seconds = 2\n"
    ));
    let mut agent = home.spawn_agent(&[], &creds);
    let job = api.submit("tls-1", &lab.url("/ad/click?id=5")).await;
    let job = api.finished(&job.job_id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.resolved_by.as_deref(), Some(device.as_str()));
    let result = job.result.unwrap();
    assert_eq!(result.conclusion, Conclusion::Resolved, "{result:?}");
    assert_eq!(
        result.final_url,
        lab.url("/landing/spring-sale?utm_source=demo&c=5")
    );

    // The resolver does not trust the relay's CA: a site with a certificate
    // from it is a TLS error for a link, as any unknown issuer is.
    let site = https_site(&pki).await;
    let job = api
        .submit("tls-2", &format!("https://127.0.0.1:{}/", site.port()))
        .await;
    let job = api.finished(&job.job_id).await;
    let result = job.result.expect("a result");
    assert_eq!(result.conclusion, Conclusion::TlsError, "{result:?}");

    // status and doctor use the same CA.
    let (rc, out, err) = home.run(&["status", "--json"], &creds).await;
    assert_eq!(rc, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["relayReachable"], true, "{st}");
    assert!(
        st["relayCaFile"]
            .as_str()
            .unwrap()
            .ends_with("relay-ca.pem"),
        "{st}"
    );
    let (rc, out, _) = home.run(&["doctor"], &creds).await;
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("PASS  tls") && l.contains("relay-ca.pem")),
        "{out}"
    );
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));

    // The same agent without the CA: no connection, and status/doctor say why.
    let bare = AgentHome::new(tmp.path(), "no-ca");
    bare.write_config(&format!("relay = \"{url}\"\npoll_wait_seconds = 2\n"));
    let (rc, out, _) = bare.run(&["status", "--json"], &creds).await;
    assert_eq!(rc, 0);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["relayReachable"], false, "{st}");
    assert!(
        st["relayError"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{st}"
    );
    let (rc, out, _) = bare.run(&["doctor"], &creds).await;
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL  tls") && l.contains("relay_ca_file")),
        "{out}"
    );
    // …and the flag fixes it.
    let ca = pki.ca.display().to_string();
    let (rc, out, _) = bare
        .run(&["status", "--json", "--relay-ca-file", &ca], &creds)
        .await;
    assert_eq!(rc, 0);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["relayReachable"], true, "{st}");
    let mut agent = bare.spawn_agent(&[], &creds);
    wait_for("the agent to log the certificate failure", || async {
        bare.logs()
            .to_lowercase()
            .contains("certificate")
            .then_some(())
    })
    .await;
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));

    // The managed configuration can name the CA too (an absolute path).
    let managed = AgentHome::new(tmp.path(), "managed");
    managed.write_config(&format!("relay = \"{url}\"\n"));
    std::fs::write(
        managed.dir.join("managed.toml"),
        format!("relay_ca_file = {ca:?}\n"),
    )
    .unwrap();
    let (rc, out, err) = managed.run(&["status", "--json"], &creds).await;
    assert_eq!(rc, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["relayReachable"], true, "{st}");
    assert!(
        st["managedSettings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "relay_ca_file"),
        "{st}"
    );
    // A managed CA file that is not there stops the agent in one line naming the source.
    std::fs::write(
        managed.dir.join("managed.toml"),
        "relay_ca_file = \"/nonexistent/relay-ca.pem\"\n",
    )
    .unwrap();
    let (rc, _, err) = managed.run(&["run", "--headless"], &creds).await;
    assert_one_line_error(rc, &err, "managed.toml");
    assert!(err.contains("/nonexistent/relay-ca.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_over_https_needs_the_relay_ca_and_fails_in_one_line_without_it() {
    if !keychain_or_skip("enroll_over_https_needs_the_relay_ca_and_fails_in_one_line_without_it") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path());
    let (relay, url) = start_tls_relay(tmp.path(), &pki).await;
    let lab = Lab::start().await.unwrap();
    let api = Api::new(&relay, &url, &pki.roots);
    let home = AgentHome::new(tmp.path(), "kc-tls");
    let stored = || Keychain::open(Some(&home.profile)).unwrap().load().unwrap();
    let code = enrollment_code(&relay);

    let (rc, _, err) = home
        .run(&["enroll", "--relay", &url, "--code", &code], &[])
        .await;
    assert_one_line_error(rc, &err, "certificate");
    assert!(err.contains("relay_ca_file"), "says what to do: {err}");
    assert!(stored().is_none(), "nothing written to the keychain");

    // The TLS failure spent nothing: the same code works once the CA is given.
    let ca = pki.ca.display().to_string();
    let (rc, out, err) = home
        .run(
            &[
                "enroll",
                "--relay",
                &url,
                "--code",
                &code,
                "--relay-ca-file",
                &ca,
            ],
            &[],
        )
        .await;
    assert_eq!(rc, 0, "{out}{err}");
    let creds = stored().expect("credentials in the keychain");
    assert!(out.contains(&creds.device_id), "{out}");
    assert_eq!(creds.relay.as_deref(), Some(format!("{url}/").as_str()));

    // The agent runs from the keychain (relay saved at enrollment) with the CA from config.toml.
    home.write_config(&format!("relay_ca_file = {ca:?}\npoll_wait_seconds = 2\n"));
    let mut agent = home.spawn_agent(&[], &[]);
    let job = api.submit("kc-tls-1", &lab.url("/s/kc")).await;
    let job = api.finished(&job.job_id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.resolved_by.as_deref(), Some(creds.device_id.as_str()));
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().await, Some(0));

    let (rc, out, _) = home.run(&["sign-out"], &[]).await;
    assert_eq!(rc, 0, "{out}");
    assert!(stored().is_none());
    // Nothing leaves by another door: the secret is in no log.
    assert!(!home.logs().contains(&creds.device_secret));
}
