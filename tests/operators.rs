//! For operators and artists, through the real binary: the evidence ledger
//! of AI crawlers' visits (written, verified, exported, tampered with), the
//! dashboard's API, and `fixative ip-ranges update` against a local server.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixative, Origin, bin, client, site};

const GPTBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

/// AI training crawlers get protected images instead of a refusal, so the
/// ledger records a watermark.
const POLICY: &str = "[policy.evidence]\n[[policy.evidence.rule]]\nname = \"cloak-ai\"\nmatch = { category = [\"ai-training\"] }\naction = \"cloak\"\n[[policy.evidence.rule]]\nname = \"block-libraries\"\nmatch = { category = [\"http-library\"] }\naction = \"block\"\n";

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run fixative");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `fixative evidence verify --json` until `ok(report)` or 10 s.
fn verify_until(
    dir: &Path,
    key: &Path,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = cli(&[
            "evidence",
            "verify",
            p(dir),
            "--public-key",
            p(key),
            "--json",
        ]);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        if ok(&r) || Instant::now() > until {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn get(fx: &Fixative, path: &str, ua: &str, accept: &str) -> reqwest::Response {
    client()
        .get(fx.url(path))
        .header("user-agent", ua)
        .header("accept", accept)
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_records_what_ai_crawlers_were_served_and_detects_tampering() {
    let origin = Origin::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("evidence.key");
    let (code, out, err) = cli(&["evidence", "keygen", p(&key)]);
    assert_eq!(code, 0, "{out}{err}");
    let public = dir.path().join("evidence.pub");
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .contains("BEGIN PUBLIC KEY")
    );
    // A key is never overwritten.
    assert_eq!(cli(&["evidence", "keygen", p(&key)]).0, 2);
    let ledger = dir.path().join("evidence");
    let mut fx = Fixative::start_in(
        dir,
        "",
        &format!(
            "{}{POLICY}\n[evidence]\ndir = \"evidence\"\nsigning_key_file = \"evidence.key\"\nseal_interval = \"200ms\"\nscrapers = true\n",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"evidence\""
            )
        ),
    );
    // GPTBot reads robots.txt, then takes a page and an image anyway.
    let r = get(&fx, "/robots.txt", GPTBOT, "*/*").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("GPTBot"));
    assert_eq!(
        get(&fx, "/pages/1", GPTBOT, "text/html").await.status(),
        200
    );
    let img = get(&fx, "/img/astronaut.png", GPTBOT, "image/*").await;
    assert_eq!(img.status(), 200);
    let served = img.bytes().await.unwrap();
    // A person is never recorded; a blocked library is (`scrapers`).
    assert_eq!(
        get(&fx, "/pages/2", FIREFOX, "text/html,application/xhtml+xml")
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&fx, "/pages/3", "python-requests/2.32.3", "*/*")
            .await
            .status(),
        403
    );

    let r = verify_until(&ledger, &public, |r| {
        r["visits"].as_u64() >= Some(4) && r["unsealed"] == 0
    });
    assert!(r["broken"].is_null(), "{r}");
    assert_eq!(r["visits"], 4, "{r}");
    assert!(r["seals"].as_u64() >= Some(1), "{r}");

    // Export: GPTBot's three visits with what it was served.
    let (code, out, err) = cli(&[
        "evidence",
        "export",
        p(&ledger),
        "--crawler",
        "gptbot",
        "--format",
        "json",
        "--public-key",
        p(&public),
        "--since",
        "2026-01-01",
    ]);
    assert_eq!(code, 0, "{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["verified"], true);
    let visits = e["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 3, "{out}");
    let by_path = |p: &str| {
        visits
            .iter()
            .find(|v| v["path"] == p)
            .unwrap_or_else(|| panic!("{p}: {out}"))
    };
    let page = by_path("/pages/1");
    assert_eq!(page["crawler"], "GPTBot");
    assert_eq!(page["category"], "ai-training");
    assert_eq!(page["user_agent"], GPTBOT);
    assert_eq!(page["client_ip"], "127.0.0.1");
    assert_eq!(page["network"], "127.0.0.0/24");
    assert_eq!(page["status"], 200);
    // robots.txt disallows the page to GPTBot, and GPTBot had fetched it.
    assert_eq!(
        page["reservation"]["robots_txt"]["disallowed"], true,
        "{page}"
    );
    assert_eq!(page["reservation"]["robots_txt"]["agent"], "GPTBot");
    let group = page["reservation"]["robots_txt"]["group"]
        .as_array()
        .unwrap();
    assert!(group.iter().any(|l| l == "User-agent: GPTBot"), "{page}");
    assert!(group.iter().any(|l| l == "Disallow: /"), "{page}");
    assert!(
        page["reservation"]["robots_txt"]["fetched_at"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    let headers: Vec<(String, String)> =
        serde_json::from_value(page["reservation"]["headers"].clone()).unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(header("x-robots-tag").contains("noai"), "{headers:?}");
    assert_eq!(header("tdm-reservation"), "1");
    assert!(
        header("content-usage").contains("train-ai=n"),
        "{headers:?}"
    );
    let image = by_path("/img/astronaut.png");
    assert_eq!(image["action"], "cloak");
    assert_eq!(image["status"], 200);
    let mark = image["watermark"]
        .as_str()
        .unwrap_or_else(|| panic!("{image}"));
    assert_eq!(mark.len(), 16, "{image}");
    assert!(
        image["reservation"]["xmp"]
            .as_str()
            .unwrap()
            .contains("PROHIBITED"),
        "{image}"
    );
    let robots = by_path("/robots.txt");
    assert_eq!(robots["reservation"]["robots_txt"]["disallowed"], false);
    // A leaked copy traced back: the mark read from the served image is the
    // payload the ledger recorded for that visit.
    let leaked = fx.dir.path().join("leaked.png");
    std::fs::write(&leaked, &served).unwrap();
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy/assets/art/astronaut.png");
    let (code, out, err) = cli(&[
        "protector",
        "detect",
        p(&leaked),
        "--original",
        p(&original),
        "--secret",
        common::TEST_SECRET,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let found: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found["marked"], true, "{out}");
    assert_eq!(found["payload"], mark, "{out}");
    // …and the ledger finds the visit by it.
    let (code, out, _) = cli(&[
        "evidence",
        "export",
        p(&ledger),
        "--watermark",
        mark,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let by_mark: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(by_mark["visits"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(by_mark["visits"][0]["path"], "/img/astronaut.png");

    // The person is not in the ledger at all; CSV export of everything.
    let (code, csv, _) = cli(&["evidence", "export", p(&ledger)]);
    assert_eq!(code, 0);
    assert!(!csv.contains("Firefox"), "{csv}");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let (_, lib, _) = cli(&[
        "evidence",
        "export",
        p(&ledger),
        "--crawler",
        "python-requests",
        "--format",
        "json",
    ]);
    let lib: serde_json::Value = serde_json::from_str(&lib).unwrap();
    assert_eq!(lib["visits"][0]["action"], "block");
    assert_eq!(lib["visits"][0]["status"], 403);
    assert!(fx.metric("fixative_evidence_records_total") >= 3.0);

    // The dashboard's API has seen the same: GPTBot violating robots.txt.
    let api = dashboard(&client(), &fx, "").await;
    assert_eq!(api["crawlers"][0]["name"], "GPTBot", "{api}");
    let v = &api["robots_violators"][0];
    assert_eq!(v["crawler"], "GPTBot", "{api}");
    assert_eq!(v["requests"], 2, "{api}");
    assert_eq!(api["evidence"]["enabled"], true);
    assert!(api["evidence"]["records"].as_u64() >= Some(4));

    // `check` parses the key as `run` does.
    let bad = fx.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&fx.config_path)
            .unwrap()
            .replace("evidence.key", "junk.key"),
    )
    .unwrap();
    std::fs::write(
        fx.dir.path().join("junk.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["check", "--config", p(&bad)]);
    assert_eq!(code, 2);
    assert!(err.contains("evidence.signing_key_file"), "{err}");
    // …and refuses a ledger directory it could not create.
    std::fs::write(fx.dir.path().join("afile"), "x").unwrap();
    std::fs::write(
        &bad,
        std::fs::read_to_string(&fx.config_path)
            .unwrap()
            .replace("dir = \"evidence\"", "dir = \"afile/evidence\""),
    )
    .unwrap();
    let (code, _, err) = cli(&["check", "--config", p(&bad)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("evidence.dir") && err.contains("not a directory"),
        "{err}"
    );

    // Tampering, once the writer has stopped: a flipped byte is named.
    fx.child.kill().unwrap();
    fx.child.wait().unwrap();
    let file = fixative_files(&ledger).pop().unwrap();
    let mut text = std::fs::read_to_string(&file).unwrap();
    let at = text.find("/pages/1").unwrap();
    text.replace_range(at..at + 8, "/pages/9");
    std::fs::write(&file, text).unwrap();
    let (code, out, _) = cli(&["evidence", "verify", p(&ledger)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at record 2"), "{out}");
    assert!(out.contains("was altered"), "{out}");
    let (code, _, err) = cli(&["evidence", "export", p(&ledger)]);
    assert_eq!(code, 1);
    assert!(err.contains("does not verify"), "{err}");
}

fn fixative_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

/// `POST /-/reload`'s status.
async fn reload(c: &reqwest::Client, fx: &Fixative) -> u16 {
    c.post(fx.admin_url("/-/reload"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `GET /api/v1/dashboard{query}`.
async fn dashboard(c: &reqwest::Client, fx: &Fixative, query: &str) -> serde_json::Value {
    c.get(fx.admin_url(&format!("/api/v1/dashboard{query}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_page_and_reload_state() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    for _ in 0..3 {
        get(&fx, "/pages/1", GPTBOT, "text/html").await;
    }
    get(&fx, "/pages/1", FIREFOX, "text/html").await;
    let c = client();
    let page = c.get(fx.admin_url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/dashboard.js") && !html.contains("http"),
        "no external resources"
    );
    for asset in ["/dashboard.js", "/dashboard.css", "/"] {
        assert_eq!(
            c.get(fx.admin_url(asset)).send().await.unwrap().status(),
            200
        );
    }
    let js = c
        .get(fx.admin_url("/dashboard.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !js.contains("innerHTML"),
        "client-controlled strings are inserted as text"
    );
    let until = Instant::now() + Duration::from_secs(5);
    let api = loop {
        let api = dashboard(&c, &fx, "?step=60&top=5").await;
        // Every request counted: the dashboard counts each one after its
        // response has gone, so the last may lag the client.
        let counted = api["totals"]["block"] == 3 && api["totals"]["limit"] == 1;
        if counted || Instant::now() > until {
            break api;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(api["totals"]["block"], 3, "{api}");
    // The person: within the default `limit-everyone` quota.
    assert_eq!(api["totals"]["limit"], 1, "{api}");
    assert_eq!(api["series"]["step_seconds"], 60);
    assert_eq!(api["series"]["window_seconds"], 3600);
    let block = api["series"]["requests_per_second"]["block"]
        .as_array()
        .unwrap();
    assert_eq!(block.len(), 60);
    assert!(
        (block[59].as_f64().unwrap() - 3.0 / 60.0).abs() < 1e-9
            || (block[58].as_f64().unwrap() > 0.0),
        "{api}"
    );
    assert_eq!(api["crawlers"][0]["actions"]["block"], 3);
    assert_eq!(api["config"]["generation"], 1);
    assert!(api["config"]["last_reload"].is_null());
    assert_eq!(api["evidence"]["enabled"], false);
    assert_eq!(api["state"]["backend"], "memory");
    assert!(api["protector"]["cache_capacity_bytes"].as_u64() > Some(0));
    // A reload moves the generation and is reported, as is a rejected one.
    assert_eq!(reload(&c, &fx).await, 200);
    let api = dashboard(&c, &fx, "").await;
    assert_eq!(api["config"]["generation"], 2);
    assert_eq!(api["config"]["last_reload"]["ok"], true);
    let good = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, format!("{good}\n[server.bogus]\n")).unwrap();
    assert_eq!(reload(&c, &fx).await, 422);
    let api = dashboard(&c, &fx, "").await;
    assert_eq!(api["config"]["generation"], 2);
    assert_eq!(api["config"]["last_reload"]["ok"], false);
    assert!(
        api["config"]["last_reload"]["message"]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{api}"
    );
}

/// A local server standing in for a crawler operator's list.
async fn list_server(
    body: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
) -> std::net::SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/gptbot.json",
        get(move || {
            let body = body.clone();
            async move {
                let (status, text) = body.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), text)
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

/// `fixative ip-ranges update RANGES --config CONFIG --only gptbot.json`.
fn update(ranges: &Path, config: &Path) -> (i32, String, String) {
    cli(&[
        "ip-ranges",
        "update",
        p(ranges),
        "--config",
        p(config),
        "--only",
        "gptbot.json",
    ])
}

/// The reasons of GPTBot's `n`th request (from 1), once logged.
fn gptbot_reasons(fx: &Fixative, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let l: Vec<serde_json::Value> = fx
            .access_log()
            .into_iter()
            .filter(|l| l["crawler"] == "GPTBot")
            .collect();
        if l.len() >= n || Instant::now() > until {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    lines
        .get(n - 1)
        .map(|l| {
            l["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_range_lists_update_atomically_and_the_proxy_picks_them_up() {
    let body = std::sync::Arc::new(std::sync::Mutex::new((
        200,
        r#"{"creationTime": "2026-11-29T10:00:00.000000", "prefixes": [{"ipv4Prefix": "127.0.0.0/8"}, {"ipv6Prefix": "2001:db8::/32"}]}"#
            .to_string(),
    )));
    let server = list_server(body.clone()).await;
    let origin = Origin::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ranges")).unwrap();
    std::fs::write(
        dir.path().join("sources.toml"),
        format!("[[ip_range_source]]\nfile = \"gptbot.json\"\noperator = \"OpenAI\"\nurl = \"http://{server}/gptbot.json\"\n"),
    )
    .unwrap();
    let ranges = dir.path().join("ranges");
    let fx = Fixative::start_in(
        dir,
        "",
        &format!(
            "[detection]\ncatalog_files = [\"sources.toml\"]\nip_ranges_dir = \"ranges\"\n\n{}",
            site("a", &["a.test"], &[origin.addr], "default = true")
        ),
    );
    let config = fx.config_path.clone();
    // Before: OpenAI's list is not loaded, so GPTBot is neither verified
    // nor called spoofed.
    get(&fx, "/pages/1", GPTBOT, "text/html").await;
    let before = gptbot_reasons(&fx, 1);
    assert!(
        !before.iter().any(|r| r.starts_with("crawler.")),
        "{before:?}"
    );

    let (code, out, err) = update(&ranges, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("gptbot.json: 2 prefixes, created 2026-11-29T10:00:00Z"),
        "{out}"
    );
    let names: Vec<String> = std::fs::read_dir(&ranges)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["gptbot.json"], "no temporary file is left");

    // The proxy notices the new list, reloads it, and exports its age.
    let age = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let a = fx.metric("fixative_ip_ranges_age_seconds{file=\"gptbot.json\"}");
            if a > 0.0 || Instant::now() > until {
                break a;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(age > 3600.0 && age < 400.0 * 86_400.0, "{age}");
    assert!(fx.metric("fixative_ip_ranges_age_seconds{file=\"googlebot.json\"}") > 0.0);
    get(&fx, "/pages/1", GPTBOT, "text/html").await;
    let after = gptbot_reasons(&fx, 2);
    assert!(
        after.iter().any(|r| r.starts_with("crawler.verified")),
        "{after:?}\n{}",
        fx.stderr()
    );

    // A broken list or an error page leaves the good copy in place.
    let good = std::fs::read(ranges.join("gptbot.json")).unwrap();
    *body.lock().unwrap() = (200, "<html>maintenance</html>".into());
    let (code, _, err) = update(&ranges, &config);
    assert_eq!(code, 1);
    assert!(
        err.contains("not an IP-range list") && err.contains("kept the previous copy"),
        "{err}"
    );
    *body.lock().unwrap() = (503, String::new());
    let (code, _, err) = update(&ranges, &config);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(std::fs::read(ranges.join("gptbot.json")).unwrap(), good);

    // A list that no longer includes the client: GPTBot from here is now
    // a spoofed claim.
    *body.lock().unwrap() = (
        200,
        r#"{"prefixes": [{"ipv4Prefix": "192.0.2.0/24"}]}"#.into(),
    );
    let (code, _, err) = update(&ranges, &config);
    assert_eq!(code, 0, "{err}");
    let until = Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    let spoofed = loop {
        get(&fx, "/pages/1", GPTBOT, "text/html").await;
        n += 1;
        let r = gptbot_reasons(&fx, n);
        if r.iter().any(|r| r.starts_with("crawler.spoofed")) || Instant::now() > until {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        spoofed.iter().any(|r| r.starts_with("crawler.spoofed")),
        "{spoofed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_seals_the_ledger() {
    let origin = Origin::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("evidence.key");
    assert_eq!(cli(&["evidence", "keygen", p(&key)]).0, 0);
    let ledger = dir.path().join("evidence");
    // Seals by time would come only after an hour: the stop must seal.
    let mut fx = Fixative::start_in(
        dir,
        "",
        &format!(
            "{}\n[evidence]\ndir = \"evidence\"\nsigning_key_file = \"evidence.key\"\nseal_interval = \"1h\"\n",
            site("a", &["a.test"], &[origin.addr], "default = true")
        ),
    );
    assert_eq!(
        get(&fx, "/pages/1", GPTBOT, "text/html").await.status(),
        403
    );
    assert_eq!(
        fx.metric_eventually("fixative_evidence_records_total", 1.0),
        1.0
    );
    fx.signal(libc::SIGTERM);
    let until = Instant::now() + Duration::from_secs(15);
    while fx.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, _) = cli(&["evidence", "verify", p(&ledger), "--json"]);
    assert_eq!(code, 0, "{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            r["visits"].as_u64(),
            r["seals"].as_u64(),
            r["unsealed"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{r}"
    );
}
