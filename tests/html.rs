//! No-train meta tags and the trap link in HTML, through the real proxy.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{Fixative, Origin, client, site};
use futures_util::StreamExt;

const META: &str = "<meta name=\"robots\" content=\"noai, noimageai\"><meta name=\"tdm-reservation\" content=\"1\"><link rel=\"license\" type=\"application/rsl+xml\" href=\"/license.xml\">";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

fn page(c: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
    c.get(url)
        .header("user-agent", BROWSER)
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "en")
        .header("sec-fetch-mode", "navigate")
}

async fn setup() -> (Origin, Fixative) {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    (origin, fx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_and_trap_link_in_content_length_and_chunked_pages() {
    let (_o, fx) = setup().await;
    let c = client();
    for path in ["/html/cl", "/html/chunked"] {
        let r = page(&c, fx.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("etag").is_none(), "{path}: stale ETag kept");
        assert!(r.headers().get("content-length").is_none() || r.content_length().is_some());
        let body = r.text().await.unwrap();
        assert!(
            body.contains(&format!(
                "<title>Work</title>{}{META}</head>",
                fixative_proxy::challenge::script_tag(None)
            )),
            "{path}: {body}"
        );
        assert!(body.contains("<body><a href=\"/gallery/archive/full-resolution/\" rel=\"nofollow\" aria-hidden=\"true\" tabindex=\"-1\""), "{path}: {body}");
        assert!(
            body.ends_with("<h1>Portfolio</h1></body></html>"),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_origin_is_decoded_rewritten_and_recompressed_for_clients_that_accept_it() {
    let (_o, fx) = setup().await;
    let c = client();
    // A client without gzip gets plain HTML.
    let r = page(&c, fx.url("/html/gzip"))
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert!(r.text().await.unwrap().contains(META));
    // A client with gzip gets gzip, which decodes to the rewritten page.
    let r = page(&c, fx.url("/html/gzip"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let raw = r.bytes().await.unwrap();
    let mut s = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut s)
        .unwrap();
    assert!(s.contains(META), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_bytes_of_a_20_mb_page_arrive_before_the_origin_finishes() {
    let (origin, fx) = setup().await;
    let c = client();
    let r = page(&c, fx.url("/html/big")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("<body>") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first bytes never arrived: the page is being buffered")
            .unwrap()
            .unwrap();
        got.extend_from_slice(&chunk);
    }
    assert!(!origin.finished.load(std::sync::atomic::Ordering::SeqCst));
    assert!(String::from_utf8_lossy(&got).contains(META));
    origin.release.notify_one();
    let mut total = got.len();
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
    }
    assert!(origin.finished.load(std::sync::atomic::Ordering::SeqCst));
    assert!(total > 20 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_without_head_existing_robots_meta_and_legacy_charsets() {
    let (_o, fx) = setup().await;
    let c = client();
    let body = page(&c, fx.url("/html/nohead"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.starts_with("<p>A drawing, no head at all.</p>") && body.contains(META),
        "{body}"
    );

    let body = page(&c, fx.url("/html/existing-meta"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("<meta name=\"robots\" content=\"noindex, noai, noimageai\">"),
        "{body}"
    );
    assert_eq!(body.matches("name=\"robots\"").count(), 1, "{body}");

    let raw = page(&c, fx.url("/html/latin1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        raw.windows(5).any(|w| w == b"caf\xe9<"),
        "windows-1252 bytes changed"
    );
    assert!(String::from_utf8_lossy(&raw).contains("noimageai"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_304_and_206_are_untouched() {
    let (_o, fx) = setup().await;
    let c = client();
    let r = c
        .head(fx.url("/html/cl"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"page-1\"");
    let r = page(&c, fx.url("/html/not-modified")).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = page(&c, fx.url("/html/partial")).send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "<html><hea");
}
