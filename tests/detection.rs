//! Detection through the running proxy: AI crawlers blocked with a humane
//! page, browsers pass, observe mode passes but logs and counts.

mod common;

use common::{Fixative, Origin, client, site};

const GPTBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_crawler_blocked_browser_passes_observe_mode_logs() {
    let origin = Origin::start("a").await;
    let sites = format!(
        "{}{}",
        site("enforce", &["enforce.test"], &[origin.addr], ""),
        site(
            "shadow",
            &["shadow.test"],
            &[origin.addr],
            "policy = \"observe\""
        )
    );
    let fx = Fixative::start("debug_headers = true", &sites);
    let c = client();

    let r = c
        .get(fx.url("/art/1.png"))
        .header("host", "enforce.test")
        .header("user-agent", GPTBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let verdict = r.headers()["x-fixative-verdict"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        verdict.contains("action=block") && verdict.contains("crawler=GPTBot"),
        "{verdict}"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Access refused") && page.contains(&rid),
        "{page}"
    );
    assert_eq!(
        origin.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "blocked request reached the origin"
    );

    // A browser (Firefox's exact HTTP/1.1 header layout).
    let r = common::raw::firefox(
        fx.http,
        "enforce.test",
        "/",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    )
    .await;
    assert_eq!(r.status, 200);
    let verdict = r.header("x-fixative-verdict").unwrap_or("").to_string();
    assert!(verdict.starts_with("action=limit; score=0"), "{verdict}");

    let r = c
        .get(fx.url("/"))
        .header("host", "shadow.test")
        .header("user-agent", GPTBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "observe mode must let the request through");

    let log = fx.access_log_lines(3);
    let shadow = log
        .iter()
        .find(|l| l["site"] == "shadow")
        .expect("shadow line");
    assert_eq!(shadow["action"], "observe");
    assert_eq!(shadow["would"], "block");
    assert_eq!(shadow["crawler"], "GPTBot");
    assert_eq!(shadow["rule"], "block-ai-crawlers");
    assert_eq!(shadow["score"], 100);
    let blocked = log
        .iter()
        .find(|l| l["site"] == "enforce" && l["status"] == 403)
        .unwrap();
    assert_eq!(blocked["category"], "ai-training");
    assert_eq!(
        fx.metric_eventually(
            "fixative_requests_total{action=\"observe\",category=\"ai-training\",site=\"shadow\"}",
            1.0
        ),
        1.0
    );
    assert_eq!(
        fx.metric(
            "fixative_requests_total{action=\"block\",category=\"ai-training\",site=\"enforce\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_429_with_retry_after_then_recovery() {
    let origin = Origin::start("a").await;
    let policy = "[policy.tight]\n[[policy.tight.rule]]\nname = \"per-ip\"\naction = \"limit\"\nquota = { rate = 2, per = \"second\", burst = 3, key = \"ip\" }\n";
    let fx = Fixative::start(
        "",
        &format!(
            "{}{policy}",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"tight\""
            )
        ),
    );
    let c = client();
    for i in 0..3 {
        let r = c.get(fx.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.headers()["ratelimit-policy"], "\"per-ip\";q=2;w=1");
    }
    let r = c.get(fx.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1);
    assert_eq!(r.headers()["ratelimit"], "\"per-ip\";r=0;t=1");
    assert!(r.text().await.unwrap().contains("Slow down"));
    tokio::time::sleep(std::time::Duration::from_millis(retry * 1000 + 50)).await;
    let r = c.get(fx.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200, "recovers after Retry-After");
    assert_eq!(
        fx.metric_eventually(
            "fixative_rule_matches_total{action=\"limited\",rule=\"per-ip\",site=\"a\"}",
            1.0
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_hit_through_the_proxy_raises_later_verdicts() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "debug_headers = true",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    // A browser (Firefox's exact HTTP/1.1 header layout).
    let get = |path: &'static str| common::raw::firefox(fx.http, "a.test", path, "text/html");
    let verdict =
        |r: &common::raw::RawResponse| r.header("x-fixative-verdict").unwrap_or("").to_string();
    let r = get("/art/a.png").await;
    assert!(verdict(&r).contains("score=0"), "{}", verdict(&r));
    let r = get("/gallery/archive/full-resolution/").await;
    assert!(verdict(&r).contains("score=100"), "{}", verdict(&r));
    let r = get("/art/b.png").await;
    let v = verdict(&r);
    assert!(
        v.contains("action=cloak") && v.contains("rule=cloak-images-for-scrapers"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_dns_runs_in_the_background_and_then_unmasks_a_fake_crawler() {
    // 127.0.0.1 reverse-resolves to "localhost" (system resolver, offline),
    // which is under no Yandex suffix: the claim fails verification.
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "debug_headers = true",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    let c = client();
    let yandex = "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)";
    let r = c
        .get(fx.url("/"))
        .header("user-agent", yandex)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "first request: lookup pending, not blocked"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = c
            .get(fx.url("/"))
            .header("user-agent", yandex)
            .send()
            .await
            .unwrap();
        if r.status() == 403 {
            let v = r.headers()["x-fixative-verdict"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(v.contains("rule=spoofed-crawler"), "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reverse DNS never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A bot that names itself but is in no catalog entry: the default policy
/// serves its image requests a protected variant and limits its pages;
/// `observe` only records what it would do; a browser is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_self_declared_bots_get_protected_images_and_limited_pages() {
    let origin = Origin::start("a").await;
    let sites = format!(
        "{}{}",
        site(
            "enforce",
            &["enforce.test"],
            &[origin.addr],
            "default = true"
        ),
        site(
            "shadow",
            &["shadow.test"],
            &[origin.addr],
            "policy = \"observe\""
        )
    );
    let fx = Fixative::start("debug_headers = true", &sites);
    let c = client();
    let bot =
        "Mozilla/5.0 (compatible; BrandNewArtCollector/0.9; +https://collector.example/about)";
    let r = c
        .get(fx.url("/img/rocket.jpg"))
        .header("user-agent", bot)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fixative-variant"], "prepared");
    let verdict = r.headers()["x-fixative-verdict"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        verdict.contains("unknown-bot") && verdict.contains("cloak-images-for-unknown-bots"),
        "{verdict}"
    );
    let r = c
        .get(fx.url("/page"))
        .header("user-agent", bot)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("q=30;w=60")
    );
    let r = c
        .get(fx.url("/img/rocket.jpg"))
        .header("host", "shadow.test")
        .header("user-agent", bot)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-fixative-variant").is_none());
    assert!(
        r.headers()["x-fixative-verdict"]
            .to_str()
            .unwrap()
            .contains("would=cloak"),
        "{:?}",
        r.headers()
    );
    let r = common::raw::firefox(
        fx.http,
        "enforce.test",
        "/img/rocket.jpg",
        "image/avif,image/webp,*/*",
    )
    .await;
    assert!(r.header("x-fixative-variant").is_none(), "{:?}", r.headers);
    assert!(
        !r.header("x-fixative-verdict")
            .unwrap_or("")
            .contains("unknown-bot")
    );
}
