//! End-to-end tests of the foundation: the real binary in front of real
//! origins, over loopback, with a real HTTP client.

mod common;

use std::time::{Duration, Instant};

use common::{Fixative, Origin, client, site};
use futures_util::StreamExt;

const MB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_with_bodies_reach_the_origin() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    let c = client();
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        let body = if method == "GET" {
            Vec::new()
        } else {
            vec![b'z'; 12345]
        };
        let resp = c
            .request(method.parse().unwrap(), fx.url("/echo?q=1"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        assert!(resp.headers().contains_key("x-request-id"));
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["method"], method);
        assert_eq!(v["path"], "/echo");
        assert_eq!(v["body_len"], body.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_stream_both_ways_without_buffering() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    let rss_before = fx.peak_rss_kib();
    let c = client();

    // Upload: a streamed body the client never holds whole.
    let total = 50 * MB;
    let chunk = bytes::Bytes::from(vec![b'u'; 256 * 1024]);
    let stream = futures_util::stream::iter(
        (0..total / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let resp = c
        .put(fx.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["body_len"], total);

    // Download: count bytes as they arrive.
    let resp = c
        .get(fx.url(&format!("/big/{total}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0usize;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        got += chunk.unwrap().len();
    }
    assert_eq!(got, total);

    // Neither direction was buffered whole: the proxy's peak RSS grew by
    // far less than one 50 MB body.
    let growth_kib = fx.peak_rss_kib().saturating_sub(rss_before);
    assert!(
        growth_kib < 24 * 1024,
        "peak RSS grew by {growth_kib} KiB while streaming 2 × 50 MB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_exact_wildcard_and_unknown() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let sites = format!(
        "{}{}",
        site("a", &["a.test"], &[a.addr], ""),
        site("b", &["b.test", "*.b.test"], &[b.addr], "")
    );
    let fx = Fixative::start("", &sites);
    let c = client();
    for (host, want) in [
        ("a.test", "a"),
        ("b.test", "b"),
        ("img.b.test", "b"),
        ("A.TEST:80", "a"),
    ] {
        let r = c
            .get(fx.url("/"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.headers()["x-origin"], want, "{host}");
    }
    // No default site: unknown hosts get 421 with a page, and no origin hit.
    let hits = a.hits.load(std::sync::atomic::Ordering::SeqCst)
        + b.hits.load(std::sync::atomic::Ordering::SeqCst);
    let r = c
        .get(fx.url("/"))
        .header("host", "evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert!(r.text().await.unwrap().contains("Unknown site"));
    assert_eq!(
        a.hits.load(std::sync::atomic::Ordering::SeqCst)
            + b.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_502_and_slow_upstream_504() {
    let dead = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let slow = Origin::start("slow").await;
    let sites = format!(
        "{}{}",
        site("down", &["down.test"], &[dead], ""),
        site("slow", &["slow.test"], &[slow.addr], "")
    );
    let fx = Fixative::start("upstream_read_timeout = \"300ms\"", &sites);
    let c = client();
    let r = c
        .get(fx.url("/"))
        .header("host", "down.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Bad gateway") && body.contains(&rid),
        "{body}"
    );

    let t = Instant::now();
    let r = c
        .get(fx.url("/slow/3000"))
        .header("host", "slow.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(t.elapsed() < Duration::from_millis(2500));
    assert!(r.text().await.unwrap().contains("Gateway timeout"));

    assert_eq!(
        fx.metric_eventually("fixative_upstream_errors_total{site=\"down\"}", 1.0),
        1.0
    );
    assert_eq!(
        fx.metric_eventually("fixative_upstream_errors_total{site=\"slow\"}", 1.0),
        1.0
    );
}

/// A request claiming to come through a proxy chain; what the origin saw.
async fn send_forwarded(c: &reqwest::Client, fx: &Fixative, origin: &Origin) -> common::Seen {
    let r = c
        .get(fx.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    origin.last().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_trust_only_configured_proxies() {
    let origin = Origin::start("a").await;
    let c = client();

    // Loopback is not trusted: the client's X-Forwarded-For is replaced.
    let fx = Fixative::start(
        "",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    let seen = send_forwarded(&c, &fx, &origin).await;
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert!(
        seen.headers["forwarded"].starts_with("for=127.0.0.1;"),
        "{:?}",
        seen.headers
    );
    let log = fx.access_log_lines(1);
    assert_eq!(log.last().unwrap()["client_ip"], "127.0.0.1");
    drop(fx);

    // Loopback trusted: the chain is kept and the client is taken from it.
    let fx = Fixative::start(
        "trusted_proxies = [\"127.0.0.0/8\"]",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    let seen = send_forwarded(&c, &fx, &origin).await;
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "203.0.113.7");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    let log = fx.access_log_lines(1);
    assert_eq!(log.last().unwrap()["client_ip"], "203.0.113.7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_health_checks_across_upstreams() {
    let a = Origin::start("a").await;
    let mut b = Origin::start("b").await;
    let fx = Fixative::start(
        "",
        &site("pool", &["p.test"], &[a.addr, b.addr], "default = true"),
    );
    let c = client();
    let mut seen = std::collections::HashMap::new();
    for _ in 0..10 {
        let r = c.get(fx.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        *seen
            .entry(r.headers()["x-origin"].to_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");

    // Take b down; once the health check notices, every request succeeds on a.
    b.stop();
    let t = Instant::now();
    let mut on_a = 0;
    while on_a < 5 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the health check never took b out"
        );
        let r = c.get(fx.url("/")).send().await.unwrap();
        let a_answered = r.status() == 200 && r.headers()["x-origin"] == "a";
        on_a = if a_answered { on_a + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        let r = c.get(fx.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-origin"], "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_with_a_generated_certificate() {
    let origin = Origin::start("a").await;
    let (fx, tls_port, cert_pem) = Fixative::start_tls(
        "localhost",
        "",
        &site("a", &["localhost"], &[origin.addr], ""),
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
    let r = c
        .post(format!("https://localhost:{tls_port}/h2"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["body_len"], 5);
    let seen = origin.last().unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["host"], format!("localhost:{tls_port}"));
    drop(fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_valid_config_and_rejects_invalid() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let fx = Fixative::start("", &site("a", &["a.test"], &[a.addr], ""));
    let c = client();
    let r = c
        .get(fx.url("/"))
        .header("host", "b.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);

    // Valid: add site b, reload with SIGHUP.
    fx.rewrite_config(
        "",
        &format!(
            "{}{}",
            site("a", &["a.test"], &[a.addr], ""),
            site("b", &["b.test"], &[b.addr], "")
        ),
    );
    fx.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .get(fx.url("/"))
            .header("host", "b.test")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.headers()["x-origin"], "b");
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP reload did not apply");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fx.metric("fixative_config_reloads_total{result=\"success\"}"),
        1.0
    );

    // Invalid: rejected with its errors, counted, old config keeps serving.
    fx.rewrite_config(
        "",
        "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"10.0.0.5\"]\n",
    );
    let r = c.post(fx.admin_url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("site[0].upstreams[0]: \"10.0.0.5\" has no port (line 12)"),
        "{body}"
    );
    assert_eq!(
        fx.metric("fixative_config_reloads_total{result=\"error\"}"),
        1.0
    );
    for host in ["a.test", "b.test"] {
        let r = c
            .get(fx.url("/"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host} after a rejected reload");
    }
    assert!(fx.stderr().contains("reload rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_across_reload_and_graceful_shutdown() {
    let a = Origin::start("a").await;
    let fx = Fixative::start("", &site("a", &["a.test"], &[a.addr], "default = true"));
    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        let url = fx.url("/slow/700");
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = c.post(fx.admin_url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    fx.signal(libc::SIGTERM);
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    let mut fx = fx;
    let t = Instant::now();
    let status = loop {
        if let Some(s) = fx.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_just_sent() {
    let a = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site("gallery", &["g.test"], &[a.addr], "default = true"),
    );
    let c = client();
    for _ in 0..7 {
        assert_eq!(c.get(fx.url("/")).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        fx.metric_eventually(
            "fixative_requests_total{action=\"limit\",category=\"none\",site=\"gallery\"}",
            7.0
        ),
        7.0
    );
    assert_eq!(
        fx.metric_eventually(
            "fixative_request_duration_seconds_count{site=\"gallery\"}",
            7.0
        ),
        7.0
    );
    assert_eq!(fx.metric("fixative_build_info{version=\"0.1.0\"}"), 1.0);
    let h = c.get(fx.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    // The access log has one JSON line per request with the agreed fields.
    let log = fx.access_log_lines(7);
    assert_eq!(log.len(), 7);
    for k in [
        "time",
        "request_id",
        "client_ip",
        "site",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "action",
        "score",
        "reasons",
    ] {
        assert!(log[0].get(k).is_some(), "missing {k} in {}", log[0]);
    }
    assert_eq!(log[0]["site"], "gallery");
    assert_eq!(log[0]["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origin_behind_upstream_tls() {
    // The HTTPS origin is a second Fixative terminating TLS with a
    // self-signed certificate in front of a plain origin.
    let origin = Origin::start("deep").await;
    let (https_origin, tls_port, _) = Fixative::start_tls(
        "origin.test",
        "",
        &site("deep", &["origin.test"], &[origin.addr], "default = true"),
    );
    let tls_addr: std::net::SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let edge = Fixative::start(
        "",
        &site(
            "edge",
            &["edge.test"],
            &[tls_addr],
            "upstream_tls = { sni = \"origin.test\", verify = false }\ndefault = true",
        ),
    );
    let r = client()
        .post(edge.url("/via-tls"))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "edge:\n{}\nTLS origin:\n{}",
        edge.stderr(),
        https_origin.stderr()
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["origin"], "deep");
    assert_eq!(v["body_len"], 3);
    // The inner hop was HTTPS: the TLS-terminating Fixative says so.
    assert_eq!(origin.last().unwrap().headers["x-forwarded-proto"], "https");

    // With verification on, the self-signed origin is refused: 502.
    let strict = Fixative::start(
        "",
        &site(
            "edge",
            &["edge.test"],
            &[tls_addr],
            "upstream_tls = { sni = \"origin.test\" }\ndefault = true",
        ),
    );
    let r = client().get(strict.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    drop(https_origin);
}
