//! Web Bot Auth through the real proxy: a local signing agent (Ed25519,
//! RFC 9421 headers made by Cloudflare's `web-bot-auth` signer) whose key
//! directory is served over HTTPS by a local server; the proxy fetches it
//! in the background after the first signed request, then verifies,
//! matches `signed_agent` in a policy, and refuses replays, altered and
//! expired signatures. A second agent's keys come from a local directory
//! file, which `explain` reads too.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{Fixative, client};
use indexmap::IndexMap;
use web_bot_auth::components::{
    CoveredComponent, DerivedComponent, HTTPField, HTTPFieldParametersSet,
};
use web_bot_auth::keyring::Algorithm;
use web_bot_auth::message_signatures::{MessageSigner, UnsignedMessage};

struct Agent {
    secret: [u8; 32],
    keyid: String,
    jwks: String,
}

impl Agent {
    fn new(seed: u8) -> Agent {
        let secret = [seed; 32];
        let pk = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pk.as_bytes());
        // RFC 7638 thumbprint of the OKP key.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        use sha2::Digest;
        let keyid = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(canonical.as_bytes()));
        Agent {
            secret,
            keyid,
            jwks: format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"sig"}}]}}"#),
        }
    }

    /// `Signature-Agent`, `Signature-Input`, `Signature` for a request to
    /// `authority`, valid for `valid` from now.
    fn sign(
        &self,
        agent_url: &str,
        authority: &str,
        nonce: &str,
        valid: Duration,
    ) -> Vec<(String, String)> {
        struct M {
            authority: String,
            agent: String,
            input: String,
            sig: String,
        }
        impl UnsignedMessage for M {
            fn fetch_components_to_cover(&self) -> IndexMap<CoveredComponent, String> {
                let mut m = IndexMap::new();
                m.insert(
                    CoveredComponent::Derived(DerivedComponent::Authority { req: false }),
                    self.authority.clone(),
                );
                m.insert(
                    CoveredComponent::HTTP(HTTPField {
                        name: "signature-agent".into(),
                        parameters: HTTPFieldParametersSet(vec![]),
                    }),
                    self.agent.clone(),
                );
                m
            }
            fn register_header_contents(&mut self, input: String, sig: String) {
                self.input = format!("sig1={input}");
                self.sig = format!("sig1={sig}");
            }
        }
        let mut m = M {
            authority: authority.into(),
            agent: format!("\"{agent_url}\""),
            input: String::new(),
            sig: String::new(),
        };
        MessageSigner {
            keyid: self.keyid.clone(),
            nonce: nonce.into(),
            tag: "web-bot-auth".into(),
        }
        .generate_signature_headers_content(
            &mut m,
            valid,
            Algorithm::Ed25519,
            &self.secret.to_vec(),
        )
        .unwrap();
        vec![
            ("signature-agent".into(), m.agent),
            ("signature-input".into(), m.input),
            ("signature".into(), m.sig),
        ]
    }
}

/// An HTTPS server for `/.well-known/http-message-signatures-directory`
/// (a certificate for 127.0.0.1 from a test CA); returns its address, the
/// CA's PEM and a fetch counter.
async fn directory_server(
    jwks: String,
) -> (SocketAddr, String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = fetches.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let jwks = jwks.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let ok = line.starts_with("GET /.well-known/http-message-signatures-directory ");
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let resp = if ok {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/http-message-signatures-directory+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                        jwks.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .into()
                };
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, ck.cert.pem(), fetches)
}

async fn get(c: &reqwest::Client, fx: &Fixative, ua: &str, headers: &[(String, String)]) -> u16 {
    let mut r = c.get(fx.url("/gallery/")).header("user-agent", ua);
    for (k, v) in headers {
        r = r.header(k.as_str(), v.as_str());
    }
    let r = r.send().await.unwrap();
    // The access-log line is written after the response has gone, so the
    // next request's line could come first: wait for this one, the test
    // reads the lines in the order of its requests.
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let t = std::time::Instant::now();
    while !fx
        .access_log()
        .iter()
        .any(|l| l["request_id"] == id.as_str())
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "request {id} never logged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_agents_are_verified_matched_and_forgeries_refused() {
    let origin = common::Origin::start("o").await;
    let crawler = Agent::new(3);
    let (dir_addr, ca_pem, fetches) = directory_server(crawler.jwks.clone()).await;
    let agent_host = dir_addr.to_string();
    let agent_url = format!("https://{agent_host}");
    // A second agent whose keys the operator put in a file.
    let filed = Agent::new(5);
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("files.test.json"), &filed.jwks).unwrap();
    std::fs::write(tmp.path().join("ca.pem"), &ca_pem).unwrap();
    let rest = format!(
        r#"[[site]]
name = "art"
hosts = ["art.test"]
default = true
upstreams = ["{}"]

[detection.web_bot_auth]
directories_dir = "{}"
ca_file = "{}"

[policy.default]
[[policy.default.rule]]
name = "signed-partners"
match = {{ signed_agent = ["{agent_host}", "files.test"] }}
action = "allow"

[[policy.default.rule]]
name = "bad-signatures"
match = {{ score_at_least = 150 }}
action = "block"

[[policy.default.rule]]
name = "libraries"
match = {{ category = ["http-library", "ai-training"] }}
action = "block"
"#,
        origin.addr,
        keys.display(),
        tmp.path().join("ca.pem").display()
    );
    let fx = Fixative::start("", &rest);
    let c = client();
    let authority = fx.http.to_string();
    let ua = "python-requests/2.32.3";

    // Unsigned: what the user agent says decides.
    assert_eq!(get(&c, &fx, ua, &[]).await, 403);
    // The first signed request of an unknown agent is not held for a
    // fetch: it goes on unverified (and here is blocked as a library).
    let first = crawler.sign(&agent_url, &authority, "n-1", Duration::from_secs(60));
    assert_eq!(get(&c, &fx, ua, &first).await, 403);
    assert_eq!(
        fx.metric_eventually("fixative_web_bot_auth_fetches_total{outcome=\"ok\"}", 1.0),
        1.0
    );
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Now verified: the signed identity overrides the user agent, the
    // policy's signed_agent rule allows it.
    let second = crawler.sign(&agent_url, &authority, "n-2", Duration::from_secs(60));
    assert_eq!(get(&c, &fx, ua, &second).await, 200);
    // Claiming GPTBot changes nothing: the signature says who it is.
    let third = crawler.sign(&agent_url, &authority, "n-3", Duration::from_secs(60));
    assert_eq!(get(&c, &fx, "GPTBot/1.2", &third).await, 200);
    // Replayed within its validity.
    assert_eq!(get(&c, &fx, ua, &second).await, 403);
    // Signed for another host.
    let elsewhere = crawler.sign(&agent_url, "other.example", "n-4", Duration::from_secs(60));
    assert_eq!(get(&c, &fx, ua, &elsewhere).await, 403);
    // Another key claiming the same agent.
    let forger = Agent::new(9);
    let forged = forger.sign(&agent_url, &authority, "n-5", Duration::from_secs(60));
    assert_eq!(get(&c, &fx, ua, &forged).await, 403);
    // Valid for longer than max_lifetime (1 h by default).
    let long = crawler.sign(&agent_url, &authority, "n-6", Duration::from_secs(7200));
    assert_eq!(get(&c, &fx, ua, &long).await, 403);
    // The agent from the local file verifies on its first request.
    let from_file = filed.sign(
        "https://files.test",
        &authority,
        "f-1",
        Duration::from_secs(60),
    );
    assert_eq!(get(&c, &fx, ua, &from_file).await, 200);
    // Still one fetch: a known agent is not fetched again.
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);

    let log = fx.access_log_lines(10);
    let reasons = |i: usize| log[i]["reasons"].to_string();
    assert!(log[0]["signed_agent"].is_null());
    assert!(reasons(1).contains("signature.pending"), "{}", reasons(1));
    assert_eq!(log[2]["signed_agent"], agent_host.as_str());
    assert_eq!(log[2]["rule"], "signed-partners");
    assert_eq!(log[2]["crawler"], agent_host.as_str());
    assert_eq!(
        log[3]["signed_agent"],
        agent_host.as_str(),
        "GPTBot claim overridden"
    );
    assert!(reasons(4).contains("replayed"), "{}", reasons(4));
    assert!(
        reasons(5).contains("signature does not verify"),
        "{}",
        reasons(5)
    );
    assert!(reasons(6).contains("is not in"), "{}", reasons(6));
    assert!(reasons(7).contains("max_lifetime"), "{}", reasons(7));
    assert_eq!(log[8]["signed_agent"], "files.test");
    for line in &log[4..8] {
        assert_eq!(line["rule"], "bad-signatures", "{line}");
    }

    // explain, with the same configuration, verifies from the file.
    let fresh = filed.sign(
        "https://files.test",
        "art.test",
        "f-2",
        Duration::from_secs(60),
    );
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["explain", "--config"])
        .arg(&fx.config_path)
        .args([
            "--ua",
            ua,
            "--ip",
            "192.0.2.7",
            "--host",
            "art.test",
            "--path",
            "/gallery/",
        ]);
    for (k, v) in &fresh {
        cmd.args(["--header", &format!("{k}: {v}")]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("signed:   files.test (Web Bot Auth signature verified)"),
        "{text}"
    );
    assert!(text.contains("signed-partners"), "{text}");
}
