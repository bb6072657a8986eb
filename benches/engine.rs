//! Criterion bench: the detection engine over a realistic request mix with
//! the full catalog and the default policy.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fixative_rules::{Engine, RequestFacts};

struct Req {
    ip: IpAddr,
    path: &'static str,
    ua: &'static str,
    headers: BTreeMap<String, String>,
}

fn mix() -> Vec<Req> {
    let browser_headers = || {
        let mut h = BTreeMap::new();
        h.insert(
            "accept".to_string(),
            "text/html,application/xhtml+xml,*/*;q=0.8".to_string(),
        );
        h.insert("accept-language".to_string(), "en-GB,en;q=0.9".to_string());
        h.insert("sec-fetch-mode".to_string(), "navigate".to_string());
        h
    };
    let kinds: &[(&str, &str, bool, usize)] = &[
        // (UA, path, browser headers, weight out of 100)
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "/",
            true,
            30,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "/art/rocket.jpg",
            true,
            25,
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "/gallery/2024/",
            true,
            15,
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "/art/coffee.png",
            false,
            8,
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            "/",
            false,
            4,
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "/",
            false,
            6,
        ),
        (
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "/",
            false,
            2,
        ),
        ("python-requests/2.32.3", "/art/astronaut.png", false, 5),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:72.0) Gecko/20100101 Firefox/72.0",
            "/art/brick.png",
            false,
            5,
        ),
    ];
    let mut out = Vec::new();
    let mut n = 0u32;
    for (ua, path, hdrs, weight) in kinds {
        for _ in 0..*weight {
            n += 1;
            let ip = if ua.contains("Googlebot") {
                IpAddr::from([66, 249, 66, (n % 250) as u8])
            } else {
                IpAddr::from([198, 51, (n / 250) as u8, (n % 250) as u8])
            };
            out.push(Req {
                ip,
                path,
                ua,
                headers: if *hdrs {
                    browser_headers()
                } else {
                    BTreeMap::new()
                },
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let engine = Engine::with_default_config().expect("engine");
    let reqs = mix();
    let mut i = 0usize;
    let mut t = 1u64;
    c.bench_function("engine/evaluate (realistic mix, default policy)", |b| {
        b.iter(|| {
            let r = &reqs[i % reqs.len()];
            i += 1;
            // Spread requests over time so limiters stay under quota.
            t += 1;
            let facts = RequestFacts {
                now: Duration::from_millis(t * 50),
                client_ip: r.ip,
                method: "GET",
                host: "gallery.example",
                path: r.path,
                user_agent: Some(r.ua),
                headers_known: true,
                header: &r.headers,
                http10: false,
                rdns: fixative_rules::Rdns::Unknown,
                unix_time: 0,
                known: fixative_rules::Known::default(),
            };
            black_box(engine.evaluate(black_box(&facts), "default"))
        })
    });
    let browser = &reqs[0];
    c.bench_function("engine/evaluate (browser page, common path)", |b| {
        b.iter(|| {
            t += 1;
            let facts = RequestFacts {
                now: Duration::from_millis(t * 50),
                client_ip: browser.ip,
                method: "GET",
                host: "gallery.example",
                path: browser.path,
                user_agent: Some(browser.ua),
                headers_known: true,
                header: &browser.headers,
                http10: false,
                rdns: fixative_rules::Rdns::Unknown,
                unix_time: 0,
                known: fixative_rules::Known::default(),
            };
            black_box(engine.evaluate(black_box(&facts), "default"))
        })
    });
    let catalog = engine.catalog();
    c.bench_function("catalog/match_ua (browser, no match)", |b| {
        b.iter(|| black_box(catalog.match_ua(black_box(browser.ua))))
    });
}

/// What a pass costs on the request path: verifying the cookie alone, and
/// a whole verdict for a browser that carries one.
fn bench_pass(c: &mut Criterion) {
    use fixative_rules::pass::{Binding, Flags, Keys, PASS_COOKIE};
    let secret = "bench-secret-0123456789abcdef";
    let cfg = fixative_config::Config::from_toml(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\n[protector]\nsecret = \"{secret}\"\n"
        ),
        "bench",
        None,
    )
    .expect("config");
    let engine = Engine::new(&cfg).expect("engine");
    let keys = Keys::new(secret, &[]);
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let now = 1_800_000_000;
    let token = keys
        .mint_pass(Binding::of(ip, ua), Flags::default(), now, 86_400)
        .expect("pass");
    c.bench_function("pass/verify (binding + HMAC)", |b| {
        b.iter(|| {
            let bind = Binding::of(black_box(ip), black_box(ua));
            black_box(keys.verify_pass(black_box(&token), bind, now))
        })
    });
    let mut headers = BTreeMap::new();
    headers.insert(
        "accept".to_string(),
        "image/avif,image/webp,*/*".to_string(),
    );
    headers.insert("accept-language".to_string(), "en".to_string());
    headers.insert("sec-fetch-mode".to_string(), "no-cors".to_string());
    headers.insert(
        "cookie".to_string(),
        format!("theme=dark; {PASS_COOKIE}={token}"),
    );
    let mut t = 0u64;
    c.bench_function("engine/evaluate (image with a valid pass)", |b| {
        b.iter(|| {
            t += 1;
            let facts = RequestFacts {
                now: Duration::from_millis(t * 50),
                client_ip: ip,
                method: "GET",
                host: "a",
                path: "/art/x.jpg",
                user_agent: Some(ua),
                headers_known: true,
                header: &headers,
                http10: false,
                rdns: fixative_rules::Rdns::Unknown,
                unix_time: now,
                known: fixative_rules::Known::default(),
            };
            black_box(engine.evaluate(black_box(&facts), "default"))
        })
    });
}

/// What a Web Bot Auth signature costs: the published vector
/// (draft-meunier-web-bot-auth-architecture, RFC 9421 Ed25519 test key)
/// verified by the key directory (parse, freshness, key lookup, Ed25519),
/// against a request with no signature.
fn bench_bot_auth(c: &mut Criterion) {
    use fixative_rules::botauth::{Directory, Message};
    let mut cfg = fixative_config::WebBotAuth::default();
    // Nonces not remembered: every iteration verifies in full.
    cfg.max_nonces = 0;
    let d = Directory::new(&cfg);
    d.insert(
        "signer.example",
        br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}]}"#,
        1_735_689_700,
        true,
    )
    .expect("jwks");
    let signed: [(&str, &str); 2] = [
        (
            "signature-input",
            r#"sig1=("@authority");created=1735689600;keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";alg="ed25519";expires=1735693200;nonce="gubxywVx7hzbYKatLgzuKDllDAIXAkz41PydU7aOY7vT+Mb3GJNxW0qD4zJ+IOQ1NVtg+BNbTCRUMt1Ojr5BgA==";tag="web-bot-auth""#,
        ),
        (
            "signature",
            "sig1=:uz2SAv+VIemw+Oo890bhYh6Xf5qZdLUgv6/PbiQfCFXcX/vt1A8Pf7OcgL2yUDUYXFtffNpkEr5W6dldqFrkDg==:",
        ),
    ];
    let unsigned: [(&str, &str); 0] = [];
    let m = |h: &'static dyn fixative_rules::HeaderLookup| Message {
        header: h,
        method: "GET",
        authority: "example.com",
        path: "/",
        scheme: "https",
    };
    let signed: &'static [(&str, &str); 2] = Box::leak(Box::new(signed));
    let unsigned: &'static [(&str, &str); 0] = Box::leak(Box::new(unsigned));
    assert!(matches!(
        d.check(&m(signed), 1_735_689_700),
        fixative_rules::botauth::Check::Verified { .. }
    ));
    c.bench_function("botauth/check (no signature)", |b| {
        b.iter(|| black_box(d.check(black_box(&m(unsigned)), 1_735_689_700)))
    });
    c.bench_function("botauth/check (published vector, verified)", |b| {
        b.iter(|| black_box(d.check(black_box(&m(signed)), 1_735_689_700)))
    });
}

criterion_group!(benches, bench, bench_pass, bench_bot_auth);
criterion_main!(benches);
