//! The browser check, passes, the interstitial and the tarpit, through the
//! running proxy with HTTP clients (real browsers: `tests/browsers.rs`).

mod common;

use std::time::{Duration, Instant};

use common::{Fixative, Origin, TEST_SECRET, client, site};
use fixative_rules::pass::{self, Binding, Flags, Keys, PASS_COOKIE};

/// One at a time: the tarpit test measures latency.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn keys() -> Keys {
    // Tests configure no challenge.secret: passes use protector.secret.
    Keys::new(TEST_SECRET, &[])
}

fn now() -> u64 {
    fixative_proxy::challenge::unix_now()
}

/// A browser-like request (reqwest; the header order is not a browser's,
/// which adds the header-fingerprint weight only).
fn get(c: &reqwest::Client, url: String, accept: &str) -> reqwest::RequestBuilder {
    c.get(url)
        .header("user-agent", CHROME)
        .header("accept", accept)
        .header("accept-language", "en-US,en;q=0.9")
        .header("sec-fetch-mode", "no-cors")
        .header("sec-fetch-site", "same-origin")
}

fn clean_report() -> serde_json::Value {
    serde_json::json!({
        "webdriver": false,
        "ua": CHROME,
        "brands": ["Chromium/131", "Google Chrome/131", "Not_A Brand/24"],
        "ua_platform": "Linux",
        "platform": "Linux x86_64",
        "chrome": true,
        "outer": [1280, 900],
        "plugins": 5,
        "globals": [],
        "languages": "en-US,en",
    })
}

/// A fresh challenge from `base` (`http://…`): its token and difficulty.
async fn new_challenge(c: &reqwest::Client, base: &str) -> (String, u8) {
    let ch: serde_json::Value = c
        .post(format!("{base}/.fixative/challenge"))
        .header("user-agent", CHROME)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        ch["token"].as_str().unwrap().to_string(),
        ch["difficulty"].as_u64().unwrap() as u8,
    )
}

/// Posts a solved challenge as the page script does (`same_origin`: with
/// the fetch metadata a page's `fetch` sends).
async fn submit(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    counter: u64,
    report: serde_json::Value,
    same_origin: bool,
) -> reqwest::Response {
    let mut b = c
        .post(format!("{base}/.fixative/pass"))
        .header("user-agent", CHROME)
        .header("content-type", "application/json");
    if same_origin {
        b = b.header("sec-fetch-site", "same-origin");
    }
    b.body(serde_json::json!({"token": token, "counter": counter, "report": report}).to_string())
        .send()
        .await
        .unwrap()
}

fn base(fx: &Fixative) -> String {
    fx.url("").trim_end_matches('/').to_string()
}

/// Runs the check as the page script does: challenge, proof of work,
/// report. Returns the status, the pass cookie and the challenge token.
async fn run_check(
    c: &reqwest::Client,
    fx: &Fixative,
    report: serde_json::Value,
) -> (u16, Option<String>, String) {
    let (token, difficulty) = new_challenge(c, &base(fx)).await;
    let counter = pass::solve(&token, difficulty);
    let (status, cookie) = post_pass(c, fx, &token, counter, report).await;
    (status, cookie, token)
}

async fn post_pass(
    c: &reqwest::Client,
    fx: &Fixative,
    token: &str,
    counter: u64,
    report: serde_json::Value,
) -> (u16, Option<String>) {
    let r = submit(c, &base(fx), token, counter, report, true).await;
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(PASS_COOKIE))
        .map(str::to_string);
    (status, cookie)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// Whether an image response is a protected variant.
fn cloaked(r: &reqwest::Response) -> bool {
    r.headers().contains_key("x-fixative-variant")
}

fn verdict(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-fixative-verdict")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn start(extra: &str) -> (Origin, Fixative) {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "debug_headers = true",
        &format!(
            "{}\n{extra}",
            site("a", &["a.test"], &[origin.addr], "default = true")
        ),
    );
    (origin, fx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_check_and_a_pass_unlocks_originals_beyond_the_grace_budget() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start("[challenge]\ngrace_images = 5").await;
    let c = client();
    // The page carries the external script with its integrity hash…
    let page = get(&c, fx.url("/pages/1"), "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tag = fixative_proxy::challenge::script_tag(None);
    assert!(page.contains(&tag), "{page}");
    // …which matches the script served (SRI: sha384 of the bytes).
    let js = c.get(fx.url("/.fixative/check.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        js.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let body = js.bytes().await.unwrap();
    use base64::Engine as _;
    use sha2::Digest as _;
    let sri = format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(&body))
    );
    assert!(tag.contains(&sri), "{tag} vs {sri}");

    // Without a pass: the grace budget (5) of originals, then previews.
    let mut seen = Vec::new();
    for k in 0..8 {
        let r = get(&c, fx.url(&format!("/img/g-1-{k}.png")), "image/png,*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        seen.push(cloaked(&r));
    }
    assert_eq!(seen, [false, false, false, false, false, true, true, true]);

    // The check earns a pass (HttpOnly, SameSite=Lax, no Secure on plain HTTP).
    let (status, cookie, _) = run_check(&c, &fx, clean_report()).await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("a pass cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    let value = cookie_value(&cookie);
    for k in 0..10 {
        let r = get(&c, fx.url(&format!("/img/g-2-{k}.png")), "image/png,*/*")
            .header("cookie", format!("{PASS_COOKIE}={value}"))
            .send()
            .await
            .unwrap();
        assert!(!cloaked(&r), "image {k} with a pass: {}", verdict(&r));
        assert!(verdict(&r).contains("pass=valid"), "{}", verdict(&r));
    }
    // Pages of pass holders no longer carry the script.
    let page = get(&c, fx.url("/pages/2"), "text/html")
        .header("cookie", format!("{PASS_COOKIE}={value}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("/.fixative/check.js"), "{page}");
    assert_eq!(
        fx.metric_eventually("fixative_checks_total{result=\"passed\"}", 1.0),
        1.0
    );
    // The access log records the pass state.
    let log = fx.access_log_lines(25);
    assert!(
        log.iter()
            .any(|l| l["pass"] == "valid" && l["path"] == "/img/g-2-0.png"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l["pass"] == "none" && l["grace_left"].is_number())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_sees_automation_marks_the_pass_and_images_are_protected() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start("").await;
    let c = client();
    let mut report = clean_report();
    report["webdriver"] = serde_json::json!(true);
    let (status, cookie, _) = run_check(&c, &fx, report).await;
    // The answer looks the same as a clean one.
    assert_eq!(status, 200);
    let value = cookie_value(&cookie.expect("a (marked) pass"));
    for k in 0..3 {
        let r = get(&c, fx.url(&format!("/img/g-1-{k}.png")), "image/png,*/*")
            .header("cookie", format!("{PASS_COOKIE}={value}"))
            .send()
            .await
            .unwrap();
        // No grace for a client whose check saw automation.
        assert!(cloaked(&r), "{}", verdict(&r));
        assert!(
            verdict(&r).contains("rule=cloak-images-for-automation"),
            "{}",
            verdict(&r)
        );
    }
    // Pages still pass: no wall.
    let r = get(&c, fx.url("/pages/1"), "text/html")
        .header("cookie", format!("{PASS_COOKIE}={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fx.metric_eventually("fixative_checks_total{result=\"automation\"}", 1.0),
        1.0
    );
    // A native solver posting without the page's fetch metadata is marked too.
    let (token, difficulty) = new_challenge(&c, &base(&fx)).await;
    let counter = pass::solve(&token, difficulty);
    let r = submit(&c, &base(&fx), &token, counter, clean_report(), false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        fx.metric_eventually("fixative_checks_total{result=\"automation\"}", 2.0),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_replayed_and_moved_passes_are_refused() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start("[challenge]\ngrace_images = 0").await;
    let c = client();
    let me = Binding::of("127.0.0.1".parse().unwrap(), CHROME);
    let image = |cookie: String| {
        get(&c, fx.url("/img/g-9-0.png"), "image/png,*/*")
            .header("cookie", format!("{PASS_COOKIE}={cookie}"))
            .send()
    };
    // A genuine pass works (the control).
    let good = keys().mint_pass(me, Flags::default(), now(), 600).unwrap();
    let r = image(good).await.unwrap();
    assert!(
        !cloaked(&r) && verdict(&r).contains("pass=valid"),
        "{}",
        verdict(&r)
    );
    // Forged: signed with another key.
    let forged = Keys::new("somebody-elses-secret-key", &[])
        .mint_pass(me, Flags::default(), now(), 600)
        .unwrap();
    let r = image(forged).await.unwrap();
    assert!(
        cloaked(&r) && verdict(&r).contains("pass=forged"),
        "{}",
        verdict(&r)
    );
    // Expired.
    let old = keys()
        .mint_pass(me, Flags::default(), now() - 7200, 3600)
        .unwrap();
    let r = image(old).await.unwrap();
    assert!(
        cloaked(&r) && verdict(&r).contains("pass=expired"),
        "{}",
        verdict(&r)
    );
    // Issued to another network.
    let elsewhere = Binding::of("198.51.100.7".parse().unwrap(), CHROME);
    let moved = keys()
        .mint_pass(elsewhere, Flags::default(), now(), 600)
        .unwrap();
    let r = image(moved).await.unwrap();
    assert!(
        cloaked(&r) && verdict(&r).contains("pass=other-network"),
        "{}",
        verdict(&r)
    );
    // Issued to another user agent.
    let other_ua = Binding::of("127.0.0.1".parse().unwrap(), "python-requests/2.32");
    let t = keys()
        .mint_pass(other_ua, Flags::default(), now(), 600)
        .unwrap();
    let r = image(t).await.unwrap();
    assert!(
        cloaked(&r) && verdict(&r).contains("pass=other-agent"),
        "{}",
        verdict(&r)
    );

    // A solved challenge is single-use.
    let (status, cookie, token) = run_check(&c, &fx, clean_report()).await;
    assert_eq!(status, 200);
    assert!(cookie.is_some());
    let counter = pass::solve(&token, 8);
    let (again, cookie) = post_pass(&c, &fx, &token, counter, clean_report()).await;
    assert_eq!(again, 400);
    assert!(cookie.is_none());
    assert_eq!(
        fx.metric_eventually("fixative_checks_total{result=\"replayed\"}", 1.0),
        1.0
    );
    // A wrong proof of work earns nothing.
    let (token, difficulty) = new_challenge(&c, &base(&fx)).await;
    let wrong = (0..)
        .find(|n| pass::leading_zero_bits(&pass::pow_hash(&token, *n)) < u32::from(difficulty))
        .unwrap();
    let (status, cookie) = post_pass(&c, &fx, &token, wrong, clean_report()).await;
    assert_eq!(status, 400);
    assert!(cookie.is_none());
    // Garbage bodies get 400, never a crash.
    for body in ["", "{", "{\"token\":1}", &"x".repeat(20_000)] {
        let r = c
            .post(fx.url("/.fixative/pass"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status() == 400 || r.status() == 413, "{}", r.status());
    }
    assert_eq!(
        c.get(fx.url("/pages/1")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_still_accept_passes_signed_with_the_old_one() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start(&format!(
        "[challenge]\nsecret = \"the-new-pass-secret-0123\"\nold_secrets = [\"{TEST_SECRET}\"]\ngrace_images = 0"
    ))
    .await;
    let c = client();
    let me = Binding::of("127.0.0.1".parse().unwrap(), CHROME);
    let old = keys().mint_pass(me, Flags::default(), now(), 600).unwrap();
    let r = get(&c, fx.url("/img/g-1-0.png"), "image/png")
        .header("cookie", format!("{PASS_COOKIE}={old}"))
        .send()
        .await
        .unwrap();
    assert!(verdict(&r).contains("pass=valid"), "{}", verdict(&r));
    // New passes are signed with the new key only.
    let (_, cookie, _) = run_check(&c, &fx, clean_report()).await;
    let v = cookie_value(&cookie.unwrap());
    assert!(keys().verify_pass(&v, me, now()).is_err());
    assert!(
        Keys::new("the-new-pass-secret-0123", &[])
            .verify_pass(&v, me, now())
            .is_ok()
    );
}

/// A policy that challenges every page under /guarded/.
const GUARDED: &str = r#"
[policy.guard]
[[policy.guard.rule]]
name = "challenge-guarded"
match = { path = ["/guarded/**"] }
action = "challenge"

[[policy.guard.rule]]
name = "tarpit-maze-bait"
match = { path = ["/bait/**"] }
action = "tarpit"

[challenge]
nojs_delay = "1s"
"#;

async fn start_guarded(tarpit: &str) -> (Origin, Fixative) {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "debug_headers = true\n[server.limits]\nmax_connections_per_client = 2000",
        &format!(
            "{}\n{GUARDED}\n{tarpit}",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"guard\""
            )
        ),
    );
    (origin, fx)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interstitial_explains_itself_and_its_no_js_path_leads_back() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start_guarded("").await;
    let c = no_redirects();
    let r = get(&c, fx.url("/guarded/work?id=7"), "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(verdict(&r).contains("action=challenge"), "{}", verdict(&r));
    let nojs_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("fixative_nojs="))
        .expect("the cookie-test cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    // Plain words, a live status for screen readers, no third-party resources.
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("role=\"status\""));
    assert!(html.contains("Checking your browser"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(
        html.contains("data-return=\"/guarded/work?id=7\""),
        "{html}"
    );
    // The no-JS path: a meta refresh in <noscript> and a button.
    let start = html.find("url=/.fixative/nojs?").expect("meta refresh") + 4;
    let end = start + html[start..].find('"').unwrap();
    let nojs = html[start..end].replace("&amp;", "&");
    assert!(html.contains("<form method=\"get\" action=\"/.fixative/nojs\">"));
    let follow = |cookie: Option<&str>| {
        let mut b = get(&c, fx.url(&nojs), "text/html");
        if let Some(ck) = cookie {
            b = b.header("cookie", ck.to_string());
        }
        b.send()
    };
    // Without the cookie the page says why instead of looping.
    let r = follow(None).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Cookies needed"));
    // Too early: asked to wait (Refresh), not refused.
    let r = follow(Some(&nojs_cookie)).await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.headers());
    assert!(r.headers().contains_key("refresh"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = follow(Some(&nojs_cookie)).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/guarded/work?id=7");
    let pass_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(PASS_COOKIE))
        .map(cookie_value)
        .expect("a no-JS pass");
    // With it, the guarded page comes from the origin.
    let r = get(&c, fx.url("/guarded/work?id=7"), "text/html")
        .header("cookie", format!("{PASS_COOKIE}={pass_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(verdict(&r).contains("pass=nojs"), "{}", verdict(&r));
    // The same no-JS token twice: refused.
    let r = follow(Some(&nojs_cookie)).await.unwrap();
    assert_eq!(r.status(), 400);
    // Images under a challenge get protected variants, never a wall.
    let r = get(&c, fx.url("/guarded/g-1-0.png"), "image/png")
        .send()
        .await
        .unwrap();
    assert!(verdict(&r).contains("action=challenge"), "{}", verdict(&r));
    assert_ne!(r.status(), 403);
    // Other requests under a challenge get the rule's status.
    let r = get(&c, fx.url("/guarded/data.json"), "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(verdict(&r).contains("action=challenge"), "{}", verdict(&r));
    // Open redirects are not possible through the return path.
    let r = get(
        &c,
        fx.url("/.fixative/nojs?t=x&r=%2F%2Fevil.test%2F"),
        "text/html",
    )
    .header("cookie", nojs_cookie.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        fx.metric_eventually("fixative_interstitials_total", 1.0),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_javascript_get_pages_and_previews_never_a_hang() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start("[challenge]\ngrace_images = 4").await;
    let base = fx.url("");
    let base = base.trim_end_matches('/');
    // curl: a page, then images; every answer comes promptly.
    let t0 = Instant::now();
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "%{http_code}\\n", "--max-time", "10"])
        .args(["-o", "/dev/null", &format!("{base}/pages/1")])
        .args((0..8).flat_map(|k| {
            [
                "-o".to_string(),
                "/dev/null".to_string(),
                format!("{base}/img/g-3-{k}.png"),
            ]
        }))
        .output()
        .expect("curl is needed: `./dev test` installs it");
    let codes = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(codes.lines().filter(|l| *l == "200").count(), 9, "{codes}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Python's requests: the same.
    let script = format!(
        "import requests\ns=requests.Session()\nprint(s.get('{base}/pages/2',timeout=10).status_code)\nfor k in range(8):\n  r=s.get('{base}/img/g-4-%d.png'%k,timeout=10)\n  print(r.status_code, r.headers.get('x-fixative-variant','original'))\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("200\n"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Four of curl's images were originals (its grace); Python (the same
    // address) gets previews only.
    assert_eq!(text.matches("200 original").count(), 0, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("200 ")).count(),
        8,
        "{text}"
    );
    let log = fx.access_log_lines(18);
    let curl_images: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/img/g-3-"))
        })
        .collect();
    assert_eq!(curl_images.len(), 8);
    assert_eq!(
        curl_images
            .iter()
            .filter(|l| l["action"] == "cloak")
            .count(),
        4,
        "{curl_images:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarpit_drips_within_its_caps_and_never_holds_too_many() {
    let _serial = SERIAL.lock().await;
    let (_o, fx) = start_guarded(
        "[tarpit]\nmax_connections = 3\nmax_per_client = 2\nmax_bytes = 600\nmax_duration = \"2s\"\ninterval = \"200ms\"",
    )
    .await;
    let c = client();
    let t0 = Instant::now();
    let first = get(&c, fx.url("/bait/a"), "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    // Per-client cap 2: a third at once from the same address is refused fast.
    let second = get(&c, fx.url("/bait/b"), "text/html")
        .send()
        .await
        .unwrap();
    let t1 = Instant::now();
    let third = get(&c, fx.url("/bait/c"), "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 403);
    assert!(t1.elapsed() < Duration::from_secs(1));
    assert_eq!(fx.metric("fixative_tarpit_active"), 2.0);
    let body = first.text().await.unwrap();
    let _ = second.text().await;
    let took = t0.elapsed();
    // Bounded: about max_bytes, about max_duration (drips of ~60 bytes).
    assert!(body.len() <= 600 + 600, "{} bytes", body.len());
    assert!(body.contains("/.fixative/maze/"), "{body}");
    assert!(body.ends_with("</body></html>\n"));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(fx.metric_eventually("fixative_tarpit_seconds_total", 2.5) >= 2.5);
    assert_eq!(fx.metric("fixative_tarpit_active"), 0.0);
    assert_eq!(fx.metric("fixative_tarpit_refused_total"), 1.0);
    // The maze's links lead back into the tarpit.
    let start = body.find("/.fixative/maze/").unwrap();
    let link = &body[start..start + "/.fixative/maze/".len() + 16];
    let t = Instant::now();
    let r = get(&c, fx.url(link), "text/html").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    assert!(t.elapsed() >= Duration::from_millis(1500));
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn page_latencies(c: &reqwest::Client, fx: &Fixative, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = get(c, fx.url("/pages/1"), "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        out.push(t.elapsed());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tarpit_holds_500_connections_while_people_are_served_as_fast() {
    let _serial = SERIAL.lock().await;
    common::raw::raise_fd_limit();
    let (_o, fx) = start_guarded(
        "[tarpit]\nmax_connections = 500\nmax_per_client = 1000\nmax_bytes = 65536\nmax_duration = \"20s\"\ninterval = \"500ms\"",
    )
    .await;
    let c = client();
    let _ = page_latencies(&c, &fx, 20).await;
    let unloaded = median(page_latencies(&c, &fx, 60).await);
    let rss_before = common::raw::rss_kib(fx.child.id());
    let addr = fx.http;
    let mut held = Vec::new();
    for i in 0..500 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(
            format!("GET /bait/{i} HTTP/1.1\r\nHost: a.test\r\nUser-Agent: scraper/1.0\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        held.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while fx.metric("fixative_tarpit_active") < 500.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fx.metric("fixative_tarpit_active"), 500.0);
    // The cap: one more is refused at once.
    let t = Instant::now();
    let r = get(&c, fx.url("/bait/more"), "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(t.elapsed() < Duration::from_secs(1));
    // People are served about as fast as without the tarpit.
    let loaded = median(page_latencies(&c, &fx, 60).await);
    let floor = Duration::from_millis(1);
    assert!(
        loaded <= 2 * unloaded.max(floor),
        "median page latency {loaded:?} with 500 tarpitted connections vs {unloaded:?} without"
    );
    // Memory per tarpitted connection stays small.
    let rss_after = common::raw::rss_kib(fx.child.id());
    let per_conn = rss_after.saturating_sub(rss_before) / 500;
    assert!(per_conn < 128, "{per_conn} KiB per tarpitted connection");
    eprintln!(
        "tarpit: 500 held; page median {unloaded:?} unloaded, {loaded:?} loaded; {per_conn} KiB RSS per connection"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fx.metric("fixative_tarpit_active") > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fx.metric("fixative_tarpit_active"), 0.0);
}

/// Over TLS and HTTP/2: the pass cookie is `Secure`, and a pass in one of
/// several `Cookie` headers (HTTP/2 clients send one per cookie) is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_over_tls_are_secure_and_read_from_split_cookie_headers() {
    let _serial = SERIAL.lock().await;
    let origin = Origin::start("a").await;
    let (_fx, tls_port, cert_pem) = Fixative::start_tls(
        "localhost",
        "debug_headers = true",
        &format!(
            "{}\n[challenge]\ngrace_images = 0",
            site("a", &["localhost"], &[origin.addr], "")
        ),
    );
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(root)
        .resolve(
            "localhost",
            format!("127.0.0.1:{tls_port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let base = format!("https://localhost:{tls_port}");
    let (token, difficulty) = new_challenge(&c, &base).await;
    let counter = pass::solve(&token, difficulty);
    let r = submit(&c, &base, &token, counter, clean_report(), true).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("; Secure"), "{set}");
    let value = cookie_value(&set);
    let r = c
        .get(format!("{base}/img/g-1-0.png"))
        .header("user-agent", CHROME)
        .header("accept", "image/png")
        .header("accept-language", "en")
        .header("sec-fetch-mode", "no-cors")
        .header("cookie", "theme=dark")
        .header("cookie", format!("{PASS_COOKIE}={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert!(verdict(&r).contains("pass=valid"), "{}", verdict(&r));
    assert!(!cloaked(&r));
}
