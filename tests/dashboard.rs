//! The dashboard in a real browser: Debian's Chromium (headless) opens the
//! admin listener's page, which must show the traffic sent through the
//! proxy, update without a reload, and fit a phone's width. A screenshot
//! of each is saved under `target/test-artifacts/`.

mod common;

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::page::ScreenshotParams;
use common::browser::{Chromium, Mode};
use common::{Fixative, Origin, client, site};

const GPTBOT: &str = "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const POLICY: &str = "[policy.dash]\n[[policy.dash.rule]]\nname = \"cloak-ai\"\nmatch = { category = [\"ai-training\"] }\naction = \"cloak\"\n[[policy.dash.rule]]\nname = \"block-libraries\"\nmatch = { category = [\"http-library\"] }\naction = \"block\"\n";

async fn get(fx: &Fixative, path: &str, ua: &str) -> u16 {
    client()
        .get(fx.url(path))
        .header("user-agent", ua)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Evaluates `js` (an expression) until it is true, or fails with what
/// the page shows.
async fn wait_true(page: &Page, js: &str, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = page
            .evaluate(js)
            .await
            .ok()
            .and_then(|r| r.into_value::<bool>().ok())
            .unwrap_or(false);
        if ok {
            return;
        }
        if Instant::now() > until {
            let text: String = page
                .evaluate("document.body.innerText + '\\nwidths: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth + ': ' + [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391).slice(0, 12).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join(', ')")
                .await
                .ok()
                .and_then(|r| r.into_value().ok())
                .unwrap_or_default();
            panic!("{what}: not shown in time; the page reads:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn artifact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_traffic_in_chromium() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &format!(
            "{}{POLICY}",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"dash\""
            )
        ),
    );
    // GPTBot reads robots.txt and takes pages anyway; a library is
    // blocked; a person reads.
    assert_eq!(get(&fx, "/robots.txt", GPTBOT).await, 200);
    for n in 0..4 {
        assert_eq!(get(&fx, &format!("/pages/{n}"), GPTBOT).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&fx, "/pages/1", "python-requests/2.32.3").await, 403);
    }
    assert_eq!(get(&fx, "/pages/1", FIREFOX).await, 200);

    let chrome = Chromium::launch(Mode::Automated(FIREFOX.into())).await;
    let page = chrome.open(&fx.admin_url("/dashboard?refresh=500")).await;
    wait_true(
        &page,
        "document.getElementById('status').className.includes('live')",
        "live status",
    )
    .await;
    // The cards, the chart and the tables hold the traffic.
    wait_true(
        &page,
        "document.getElementById('total-block').textContent === '3'",
        "3 blocked",
    )
    .await;
    wait_true(
        &page,
        "document.getElementById('total-cloak').textContent === '5'",
        "5 cloaked",
    )
    .await;
    wait_true(
        &page,
        "!!document.querySelector('#chart polyline[data-action=\"block\"]') && !!document.querySelector('#chart polyline[data-action=\"cloak\"]')",
        "a chart line per action",
    )
    .await;
    wait_true(
        &page,
        "[...document.querySelectorAll('#crawlers tbody tr')].some(r => r.cells[0].textContent === 'GPTBot' && r.cells[2].textContent === '5')",
        "GPTBot with 5 requests among the top crawlers",
    )
    .await;
    wait_true(
        &page,
        "[...document.querySelectorAll('#categories tbody tr')].some(r => r.cells[0].textContent === 'http-library' && r.cells[1].textContent === '3')",
        "the http-library category",
    )
    .await;
    wait_true(
        &page,
        "[...document.querySelectorAll('#violators tbody tr')].some(r => r.cells[0].textContent === '127.0.0.1' && r.cells[1].textContent === 'GPTBot' && r.cells[3].textContent === '4' && r.cells[4].textContent === '/pages/3')",
        "GPTBot as a robots.txt violator (4 disallowed pages, the last /pages/3)",
    )
    .await;
    wait_true(
        &page,
        "document.querySelector('#config tbody').textContent.includes('generation1')",
        "the configuration generation",
    )
    .await;
    wait_true(
        &page,
        "[...document.querySelectorAll('#limiters tbody tr')].some(r => r.cells[1].textContent === 'limit-everyone')",
        "limiter keys",
    )
    .await;
    wait_true(
        &page,
        "document.querySelector('#chart polyline').getAttribute('data-points') === '360'",
        "an hour in 10 s buckets",
    )
    .await;
    // The ten-minute window, in one-second buckets.
    page.evaluate("document.getElementById('window-600').click()")
        .await
        .unwrap();
    wait_true(
        &page,
        "document.querySelector('#chart polyline').getAttribute('data-points') === '600' && document.getElementById('axis-start').textContent === '−10 min' && document.getElementById('window-600').getAttribute('aria-pressed') === 'true'",
        "ten minutes in 1 s buckets",
    )
    .await;
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        artifact("dashboard.png"),
    )
    .await
    .unwrap();

    // Live: more traffic and a reload show up without reloading the page.
    for _ in 0..2 {
        assert_eq!(get(&fx, "/pages/1", "python-requests/2.32.3").await, 403);
    }
    assert_eq!(
        client()
            .post(fx.admin_url("/-/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    wait_true(
        &page,
        "document.getElementById('total-block').textContent === '5'",
        "5 blocked, live",
    )
    .await;
    wait_true(
        &page,
        "document.querySelector('#config tbody').textContent.includes('generation2') && document.querySelector('#config tbody').textContent.includes('applied')",
        "the reload",
    )
    .await;

    // A phone: nothing wider than the screen.
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 3.0, true))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_true(
        &page,
        "document.documentElement.scrollWidth <= window.innerWidth + 1 && window.innerWidth <= 400",
        "no horizontal scrolling at 390 px",
    )
    .await;
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        artifact("dashboard-phone.png"),
    )
    .await
    .unwrap();
    assert!(std::fs::metadata(artifact("dashboard.png")).unwrap().len() > 10_000);
}
