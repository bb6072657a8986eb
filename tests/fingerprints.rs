//! The header and TLS (JA4) fingerprints with real clients through the
//! running proxy: curl and Python's `requests` and `urllib` sending
//! Chrome's user agent are flagged (headers over plain HTTP and HTTP/1.1,
//! TLS over HTTPS including curl's HTTP/2); a real Chromium (Debian's
//! `chromium`, installed by `./dev test`) is flagged by neither.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixative, Origin, site};

const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The access-log entry of the request for `path`, waiting for it.
fn entry(fx: &Fixative, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = fx.access_log().into_iter().find(|e| e["path"] == path) {
            return e;
        }
        assert!(Instant::now() < deadline, "no access-log entry for {path}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signals(e: &serde_json::Value) -> Vec<String> {
    e["reasons"]
        .as_array()
        .map(|a| {
            // "signal:detail(+weight)"
            a.iter()
                .map(|r| {
                    let r = r.as_str().unwrap_or("");
                    r.split(':').next().unwrap_or("").to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("client runs");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loads `url` in Debian's Chromium, headless, with Chrome's user agent.
fn chromium_get(url: &str) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // The test's TLS certificate is self-signed.
            "--ignore-certificate-errors",
            &format!("--user-agent={CHROME_UA}"),
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium is needed for this test: `./dev test` installs it (package chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python(code: &str) -> Command {
    let mut c = Command::new("python3");
    c.args(["-c", code]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libraries_with_a_chrome_user_agent_are_flagged_chromium_is_not() {
    let origin = Origin::start("a").await;
    let (fx, tls_port, _cert) = Fixative::start_tls(
        "a.test",
        "",
        &site(
            "a",
            &["a.test", "127.0.0.1"],
            &[origin.addr],
            "default = true\npolicy = \"observe\"",
        ),
    );
    let http = format!("http://{}", fx.http);
    let https = format!("https://127.0.0.1:{tls_port}");
    let fx_ref = &fx;
    let has = |path: &str, signal: &str| {
        let e = entry(fx_ref, path);
        assert!(
            signals(&e).iter().any(|x| x == signal),
            "{path}: no {signal}: {e}"
        );
    };
    let flagged = |path: &str| has(path, "header.fingerprint");

    // curl, plain and HTTP/1.1 over TLS.
    run(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-A",
        CHROME_UA,
        &format!("{http}/fp/curl"),
    ]));
    flagged("/fp/curl");
    run(Command::new("curl").args([
        "-s",
        "-k",
        "--http1.1",
        "-o",
        "/dev/null",
        "-A",
        CHROME_UA,
        &format!("{https}/fp/curl-tls"),
    ]));
    flagged("/fp/curl-tls");
    has("/fp/curl-tls", "tls.fingerprint");
    // curl over TLS with HTTP/2 (no HTTP/1 header bytes): the ClientHello
    // still gives it away.
    run(Command::new("curl").args([
        "-s",
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-A",
        CHROME_UA,
        &format!("{https}/fp/curl-h2"),
    ]));
    has("/fp/curl-h2", "tls.fingerprint");

    // Python requests (HTTP/1.1 only), plain and over TLS.
    for (base, path) in [(&http, "/fp/requests"), (&https, "/fp/requests-tls")] {
        run(&mut python(&format!(
            "import requests, urllib3; urllib3.disable_warnings(); requests.get('{base}{path}', headers={{'User-Agent': '{CHROME_UA}'}}, verify=False, timeout=10)"
        )));
        flagged(path);
        if path.ends_with("-tls") {
            has(path, "tls.fingerprint");
        }
    }
    // Python urllib.
    run(&mut python(&format!(
        "import urllib.request; urllib.request.urlopen(urllib.request.Request('{http}/fp/urllib', headers={{'User-Agent': '{CHROME_UA}'}}), timeout=10).read()"
    )));
    flagged("/fp/urllib");

    // A real Chromium with a normal Chrome user agent: its header order,
    // casing and TLS ClientHello are a browser's, in plain HTTP/1.1 and
    // over TLS (HTTP/2 by ALPN).
    chromium_get(&format!("{http}/fp/chromium"));
    let e = entry(&fx, "/fp/chromium");
    let s = signals(&e);
    assert!(!s.iter().any(|x| x == "header.fingerprint"), "{e}");
    assert!(!s.iter().any(|x| x.starts_with("header.no-")), "{e}");
    chromium_get(&format!("{https}/fp/chromium-tls"));
    let e = entry(&fx, "/fp/chromium-tls");
    let s = signals(&e);
    assert!(!s.iter().any(|x| x.ends_with("fingerprint")), "{e}");
}

/// Behind a trusted TLS-terminating load balancer, the JA4 it forwards in
/// `detection.ja4_header` is used: a library's JA4 under Chrome's user
/// agent is flagged, Chrome's own is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_load_balancer_can_pass_the_ja4() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "trusted_proxies = [\"127.0.0.0/8\"]",
        &format!(
            "{}\n[detection]\nja4_header = \"X-JA4\"\n",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"observe\""
            )
        ),
    );
    let c = common::client();
    // Python's requests through the balancer: no ALPN ("00"), 31 ciphers.
    for (path, ja4) in [
        ("/lb/library", "t13d311200_e8f1e7e78f70_6bebaf5329ec"),
        ("/lb/chrome", "t13d1516h2_8daaf6152771_e5627efa2ab1"),
    ] {
        c.get(fx.url(path))
            .header("user-agent", CHROME_UA)
            .header("x-ja4", ja4)
            .send()
            .await
            .unwrap();
    }
    let lib = entry(&fx, "/lb/library");
    assert!(
        signals(&lib).iter().any(|s| s == "tls.fingerprint"),
        "{lib}"
    );
    assert!(lib.to_string().contains("t13d311200"), "{lib}");
    let chrome = entry(&fx, "/lb/chrome");
    assert!(
        !signals(&chrome).iter().any(|s| s == "tls.fingerprint"),
        "{chrome}"
    );
}
