//! No-train directives on the wire, through the real proxy.

mod common;

use common::{Fixative, Origin, client, site};

fn xrt(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("x-robots-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn assert_directives(r: &reqwest::Response, what: &str) {
    let all = xrt(r).join(", ");
    assert!(
        all.contains("noai") && all.contains("noimageai"),
        "{what}: x-robots-tag {all:?}"
    );
    assert_eq!(r.headers()["tdm-reservation"], "1", "{what}");
    assert!(
        r.headers()["content-usage"]
            .to_str()
            .unwrap()
            .contains("train-ai=n"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_on_pages_images_json_and_errors() {
    let origin = Origin::start("a").await;
    let dead = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let sites = format!(
        "{}{}",
        site("a", &["a.test"], &[origin.addr], ""),
        site("down", &["down.test"], &[dead], "")
    );
    let fx = Fixative::start("", &sites);
    let c = client();
    for path in [
        "/typed/page.html",
        "/typed/art.png",
        "/typed/data.json",
        "/plain",
    ] {
        let r = c
            .get(fx.url(path))
            .header("host", "a.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_directives(&r, path);
    }
    // The origin's own X-Robots-Tag values are kept and nothing is duplicated.
    let r = c
        .get(fx.url("/typed/art.png"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(xrt(&r), vec!["noindex", "noai", "noimageai"]);
    assert_eq!(r.headers()["content-usage"], "train-ai=n, search=y");
    // HEAD too.
    let r = c
        .head(fx.url("/typed/art.png"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_directives(&r, "HEAD");
    // Fixative's own responses: 502, 421, 403.
    let r = c
        .get(fx.url("/"))
        .header("host", "down.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_directives(&r, "502");
    let r = c
        .get(fx.url("/"))
        .header("host", "nowhere.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert_directives(&r, "421");
    let r = c
        .get(fx.url("/"))
        .header("host", "a.test")
        .header("user-agent", "CCBot/2.0 (https://commoncrawl.org/faq/)")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_directives(&r, "403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_is_merged_synthesized_cached_and_revalidated() {
    let with = Origin::start_with_robots("with", Some("User-agent: *\nDisallow: /private/")).await;
    let without = Origin::start_with_robots("without", None).await;
    let sites = format!(
        "{}{}",
        site(
            "with",
            &["with.test"],
            &[with.addr],
            "directives = { cache_ttl = \"300ms\" }"
        ),
        site("without", &["without.test"], &[without.addr], "")
    );
    let fx = Fixative::start("", &sites);
    let c = client();

    let r = c
        .get(fx.url("/robots.txt"))
        .header("host", "with.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_directives(&r, "robots.txt");
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("User-agent: *\nDisallow: /private/\n"),
        "{body}"
    );
    for line in [
        "User-agent: GPTBot\nDisallow: /\n",
        "User-agent: Google-Extended\nDisallow: /\n",
        "Content-Signal: search=yes, ai-input=no, ai-train=no\n",
        "Content-Usage: train-ai=n, search=y\n",
        "Disallow: /gallery/archive/full-resolution/\n",
    ] {
        assert!(body.contains(line), "missing {line:?}");
    }
    assert!(
        !body.contains("User-agent: Googlebot\n"),
        "search engines stay allowed"
    );

    let r = c
        .get(fx.url("/robots.txt"))
        .header("host", "without.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("# robots.txt synthesized by Fixative"),
        "{body}"
    );
    assert!(body.contains("User-agent: ClaudeBot\nDisallow: /\n"));

    // HEAD answers with the length and no body.
    let r = c
        .head(fx.url("/robots.txt"))
        .header("host", "with.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );

    // Cached: three requests, one origin fetch.
    assert_eq!(
        with.robots_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // After the TTL the copy is revalidated with its ETag: 304, same content.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = c
        .get(fx.url("/robots.txt"))
        .header("host", "with.test")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("User-agent: *\nDisallow: /private/\n")
            && body.contains("User-agent: GPTBot")
    );
    assert_eq!(
        with.robots_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(
        with.robots_not_modified
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // tdmrep.json and ai.txt are synthesized when the origin has none.
    let r = c
        .get(fx.url("/.well-known/tdmrep.json"))
        .header("host", "with.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"location": "/", "tdm-reservation": 1}])
    );
    let r = c
        .get(fx.url("/ai.txt"))
        .header("host", "with.test")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("# Spawning AI") && body.contains("Disallow: *.png"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_or_broken_origin_robots_txt_is_replaced_with_a_log_line() {
    let huge = "User-agent: *\nDisallow: /x\n".repeat(30_000); // ~780 KB
    let origin = Origin::start_with_robots("big", Some(Box::leak(huge.into_boxed_str()))).await;
    let fx = Fixative::start(
        "",
        &site("big", &["big.test"], &[origin.addr], "default = true"),
    );
    let r = client().get(fx.url("/robots.txt")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("# robots.txt synthesized by Fixative"),
        "{}",
        &body[..80]
    );
    assert!(body.len() < 50_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !fx.stderr().contains("is larger than 524288 bytes") {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line:\n{}",
            fx.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
