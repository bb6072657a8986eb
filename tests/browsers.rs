//! The browser check in real browsers: Debian's Chromium, driven over the
//! DevTools protocol. A person-like session (headed, under Xvfb, no
//! automation flags) reads a gallery and gets every image original; the
//! same browser under automation with a normal Chrome user agent is
//! detected and gets protected images; the interstitial works with and
//! without JavaScript.

mod common;

use std::time::Duration;

use common::browser::{self, Chromium, Mode};
use common::{Fixative, GALLERY_IMAGES, Origin, site};

/// One browser at a time: two Chromiums on two cores make timings noisy.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PAGES: usize = 20;

/// A current Chrome's user agent on Linux, as automation stacks set it.
const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

async fn start() -> (Origin, Fixative) {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "debug_headers = true",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    (origin, fx)
}

/// The access-log entries of gallery images, in request order: whether
/// each was served a protected variant.
fn image_actions(fx: &Fixative, expected: usize) -> Vec<(String, bool)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let imgs: Vec<(String, bool)> = fx
            .access_log()
            .iter()
            .filter(|l| l["path"].as_str().is_some_and(|p| p.starts_with("/img/g-")))
            .map(|l| {
                (
                    l["path"].as_str().unwrap_or("").to_string(),
                    l["action"] == "cloak" || l["action"] == "challenge",
                )
            })
            .collect();
        if imgs.len() >= expected || std::time::Instant::now() > deadline {
            return imgs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn read_gallery(chrome: &Chromium, fx: &Fixative) {
    let page = chrome.open(&fx.url("/pages/0")).await;
    for n in 1..PAGES {
        browser::goto(&page, &fx.url(&format!("/pages/{n}"))).await;
        // A person looks at the page for a moment.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_in_a_real_browser_gets_every_image_original() {
    let _g = SERIAL.lock().await;
    let (_o, fx) = start().await;
    let chrome = Chromium::launch(Mode::Person).await;
    read_gallery(&chrome, &fx).await;
    let total = PAGES * GALLERY_IMAGES;
    let imgs = image_actions(&fx, total);
    assert_eq!(imgs.len(), total, "{imgs:?}");
    let protected: Vec<&(String, bool)> = imgs.iter().filter(|(_, c)| *c).collect();
    assert!(
        protected.is_empty(),
        "a person got protected images: {protected:?}"
    );
    // No interstitial, a clean check.
    assert_eq!(fx.metric("fixative_interstitials_total"), 0.0);
    // The check ran on the first page or two (until the pass arrived).
    let passed = fx.metric("fixative_checks_total{result=\"passed\"}");
    assert!((1.0..=3.0).contains(&passed), "{passed} checks passed");
    assert_eq!(
        fx.metric("fixative_checks_total{result=\"automation\"}"),
        0.0
    );
    let solve = fx.metric("fixative_check_solve_seconds_sum")
        / fx.metric("fixative_check_solve_seconds_count").max(1.0);
    eprintln!(
        "person: the proof of work took {:.1} ms on average in Chromium",
        solve * 1000.0
    );
    let log = fx.access_log();
    let passed_after = log.iter().filter(|l| l["pass"] == "valid").count();
    assert!(
        passed_after > total / 2,
        "requests with a valid pass: {passed_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automated_browser_with_a_chrome_user_agent_gets_protected_images() {
    let _g = SERIAL.lock().await;
    let (_o, fx) = start().await;
    let chrome = Chromium::launch(Mode::Automated(CHROME_UA.to_string())).await;
    read_gallery(&chrome, &fx).await;
    let total = PAGES * GALLERY_IMAGES;
    let imgs = image_actions(&fx, total);
    assert_eq!(imgs.len(), total);
    let after = &imgs[25.min(imgs.len())..];
    let protected = after.iter().filter(|(_, c)| *c).count();
    let share = protected as f64 / after.len() as f64;
    eprintln!(
        "automated Chromium: {protected}/{} images after the first 25 protected ({:.0}%), {} of all {}",
        after.len(),
        share * 100.0,
        imgs.iter().filter(|(_, c)| *c).count(),
        imgs.len()
    );
    assert!(share >= 0.9, "{protected}/{} protected", after.len());
    assert!(fx.metric("fixative_checks_total{result=\"automation\"}") >= 1.0);
    assert!(
        fx.stderr().contains("browser check saw automation"),
        "{}",
        fx.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interstitial_lets_a_person_through_with_and_without_javascript() {
    let _g = SERIAL.lock().await;
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "debug_headers = true",
        &format!(
            "{}\n[policy.guard]\n[[policy.guard.rule]]\nname = \"challenge-pages\"\nmatch = {{ path = [\"/pages/**\"] }}\naction = \"challenge\"\n\n[challenge]\nnojs_delay = \"2s\"\n",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"guard\""
            )
        ),
    );
    // With JavaScript: the check runs visibly and the page reloads itself.
    {
        let chrome = Chromium::launch(Mode::Person).await;
        let page = chrome.open(&fx.url("/pages/3?x=1")).await;
        let html =
            browser::wait_for_content(&page, "Gallery page 3", Duration::from_secs(15)).await;
        assert!(html.contains("Gallery page 3"), "{html}");
        assert_eq!(fx.metric("fixative_interstitials_total"), 1.0);
        assert_eq!(fx.metric("fixative_checks_total{result=\"passed\"}"), 1.0);
        // The pass is reused: the next page comes directly.
        browser::goto(&page, &fx.url("/pages/4")).await;
        let html = page.content().await.unwrap();
        assert!(html.contains("Gallery page 4"), "{html}");
        assert_eq!(fx.metric("fixative_interstitials_total"), 1.0);
    }
    // Without JavaScript: the meta refresh, the delay, the cookie step.
    {
        let chrome = Chromium::launch(Mode::NoJs).await;
        let page = chrome.open(&fx.url("/pages/5")).await;
        let html =
            browser::wait_for_content(&page, "Gallery page 5", Duration::from_secs(20)).await;
        assert!(html.contains("Gallery page 5"), "{html}");
        assert_eq!(fx.metric("fixative_interstitials_total"), 2.0);
        assert_eq!(fx.metric("fixative_checks_total{result=\"nojs\"}"), 1.0);
        browser::goto(&page, &fx.url("/pages/6")).await;
        let html = page.content().await.unwrap();
        assert!(html.contains("Gallery page 6"), "{html}");
    }
}
