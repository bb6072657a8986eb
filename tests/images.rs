//! No-train XMP metadata in real JPEG, PNG and WebP responses, through the
//! real proxy, read back with an independent reader (exiftool).

mod common;

use std::process::Command;

use common::{Fixative, Origin, client, site};

const VALUE: &str = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING";

/// `plus:DataMining` as exiftool reads it, or "" when absent.
fn exiftool_data_mining(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("img");
    std::fs::write(&p, bytes).unwrap();
    let out = Command::new("exiftool")
        .args(["-s3", "-XMP-plus:DataMining"])
        .arg(&p)
        .output()
        .expect(
            "exiftool is needed for this test: `./dev test` installs it (libimage-exiftool-perl)",
        );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pixels(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes)
        .unwrap()
        .to_rgba8()
        .into_raw()
}

fn original(name: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(root.join("proxy/assets/art").join(name))
        .or_else(|_| std::fs::read(root.join("tests/fixtures").join(name)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_carry_xmp_and_decode_pixel_identical() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site("a", &["a.test"], &[origin.addr], "default = true"),
    );
    let c = client();
    for name in [
        "rocket.jpg",
        "astronaut.png",
        "chelsea.png",
        "chelsea-lossy.webp",
    ] {
        let r = c.get(fx.url(&format!("/img/{name}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert!(r.headers().get("etag").is_none(), "{name}: stale ETag");
        assert!(r.headers().get("accept-ranges").is_none(), "{name}");
        let body = r.bytes().await.unwrap();
        let orig = original(name);
        assert_ne!(&body[..], &orig[..], "{name}: unchanged");
        assert_eq!(exiftool_data_mining(&body), VALUE, "{name}");
        assert_eq!(
            exiftool_data_mining(&orig),
            "",
            "{name}: fixture already had it"
        );
        assert_eq!(pixels(&body), pixels(&orig), "{name}: pixels changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_malformed_and_oversized_images_pass_unchanged() {
    let origin = Origin::start("a").await;
    let sites = format!(
        "{}{}",
        site("a", &["a.test"], &[origin.addr], "default = true"),
        site(
            "small",
            &["small.test"],
            &[origin.addr],
            "directives = { image_metadata_max_bytes = 10000 }"
        )
    );
    let fx = Fixative::start("", &sites);
    let c = client();
    // 206: untouched.
    let r = c
        .get(fx.url("/img/rocket.jpg"))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        &original("rocket.jpg")[..100]
    );
    // Garbage behind a JPEG header: served exactly as the origin sent it.
    let r = c.get(fx.url("/img/broken.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b = r.bytes().await.unwrap();
    assert_eq!(b.len(), 5006);
    assert!(b[6..].iter().all(|x| *x == 0x5a));
    // A WebP is held whole: over the site's cap (17 KB > 10 KB) it passes
    // unchanged.
    let r = c
        .get(fx.url("/img/chelsea-lossy.webp"))
        .header("host", "small.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        &original("chelsea-lossy.webp")[..]
    );
    // A JPEG streams, only its head held: 112 KB under a 10 KB cap still
    // gets the packet, pixels untouched.
    let r = c
        .get(fx.url("/img/rocket.jpg"))
        .header("host", "small.test")
        .send()
        .await
        .unwrap();
    let b = r.bytes().await.unwrap();
    assert_eq!(exiftool_data_mining(&b), VALUE);
    assert_eq!(pixels(&b), pixels(&original("rocket.jpg")));
    // Under it: metadata added.
    let r = c
        .get(fx.url("/img/brick.png"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(exiftool_data_mining(&r.bytes().await.unwrap()), VALUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_allowed_mode_keeps_originals_for_people() {
    let origin = Origin::start("a").await;
    let fx = Fixative::start(
        "",
        &site(
            "a",
            &["a.test"],
            &[origin.addr],
            "default = true\ndirectives = { image_metadata = \"non-allowed\" }",
        ),
    );
    let c = client();
    let r = c
        .get(fx.url("/img/rocket.jpg"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        )
        .header("accept", "image/avif,image/webp,*/*")
        .header("accept-language", "en")
        .header("sec-fetch-mode", "no-cors")
        .send()
        .await
        .unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &original("rocket.jpg")[..]);
    // A client that fell into the robots.txt trap is no longer "allowed":
    // its images carry the metadata.
    let trap = c
        .get(fx.url("/gallery/archive/full-resolution/"))
        .send()
        .await
        .unwrap();
    // The trap's score (100) gets the challenge interstitial (403).
    assert!(
        trap.status().is_success() || trap.status() == 404 || trap.status() == 403,
        "{}",
        trap.status()
    );
    let r = c.get(fx.url("/img/rocket.jpg")).send().await.unwrap();
    assert_eq!(exiftool_data_mining(&r.bytes().await.unwrap()), VALUE);
}

/// Memory per in-flight image follows its metadata, not its size: a 48 MiB
/// JPEG gets the packet while the proxy holds only its head (the site's
/// cap is the largest allowed, so the bound does not come from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_jpeg_streams_with_its_packet_in_bounded_memory() {
    use futures_util::StreamExt;
    let origin = Origin::start("a").await;
    let sites = site(
        "a",
        &["a.test"],
        &[origin.addr],
        "default = true\ndirectives = { image_metadata_max_bytes = 536870912 }",
    );
    let fx = Fixative::start("", &sites);
    let c = client();
    // Warm up (threads, pools), then measure the peak.
    let r = c.get(fx.url("/img/rocket.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let before = fx.peak_rss_kib();
    let r = c.get(fx.url("/img/huge.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut head = Vec::new();
    let mut total = 0usize;
    let mut tail = [0u8; 2];
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if head.len() < 256 * 1024 {
            head.extend_from_slice(&chunk[..chunk.len().min(256 * 1024 - head.len())]);
        }
        total += chunk.len();
        if let Some(t) = chunk.get(chunk.len().saturating_sub(2)..)
            && t.len() == 2
        {
            tail.copy_from_slice(t);
        }
    }
    let grown = fx.peak_rss_kib().saturating_sub(before);
    let huge = common::huge_jpeg();
    let packet = fixative_protector::xmp::packet("DMI-PROHIBITED-AIMLTRAINING").len();
    assert!(
        String::from_utf8_lossy(&head).contains(&format!("DataMining=\"{VALUE}\"")),
        "the packet is in the head"
    );
    assert!(
        total > huge.len() + packet && total < huge.len() + packet + 64,
        "{total}"
    );
    assert_eq!(tail, [0xFF, 0xD9]);
    eprintln!(
        "peak RSS grew by {grown} KiB while streaming a {} MiB JPEG",
        huge.len() >> 20
    );
    assert!(grown < 24 * 1024, "peak RSS grew by {grown} KiB");
}
