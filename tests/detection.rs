//! Detection through the running proxy: AI crawlers blocked with a humane
//! page, browsers pass, observe mode passes but logs and counts.

mod common;

use common::{Fixative, Origin, client, site};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
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

    let r = c
        .get(fx.url("/"))
        .header("host", "enforce.test")
        .header("user-agent", FIREFOX)
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("accept-language", "en-GB,en;q=0.5")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["x-fixative-verdict"]
            .to_str()
            .unwrap()
            .starts_with("action=allow; score=0")
    );

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
