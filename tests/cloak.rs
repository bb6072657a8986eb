//! Protected variants for `cloak` verdicts, through the real proxy.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::{Fixative, Origin, client, site};
use fixative_protector::watermark;

const POLICY: &str = "[policy.cloaky]\n[[policy.cloaky.rule]]\nname = \"cloak-harvester\"\nmatch = { ua_regex = \"Harvester\" }\naction = \"cloak\"\n";
const HARVESTER: &str = "Mozilla/5.0 (compatible; ArtHarvester-ish; Harvester)";

fn start(origin: &Origin, protector: &str) -> Fixative {
    Fixative::start(
        "debug_headers = true",
        &format!(
            "{}{POLICY}\n[protector]\nsecret = \"{}\"\n{protector}\n",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"cloaky\""
            ),
            common::TEST_SECRET
        ),
    )
}

fn art(name: &str) -> image::DynamicImage {
    image::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("proxy/assets/art")
            .join(name),
    )
    .unwrap()
}

fn jpeg_half_q70(img: &image::DynamicImage) -> image::DynamicImage {
    let half = img.resize_exact(
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    let mut out = Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70);
    half.to_rgb8().write_with_encoder(enc).unwrap();
    image::load_from_memory(&out.into_inner()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapers_get_degraded_traceable_variants_people_get_originals() {
    let origin = Origin::start("a").await;
    let fx = start(&origin, "");
    let c = client();

    // A person: the original pixels.
    let r = c
        .get(fx.url("/img/coffee.png"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        )
        .send()
        .await
        .unwrap();
    let people = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(people.to_rgb8(), art("coffee.png").to_rgb8());

    // A scraper: a 512 px variant carrying a mark that survives q70 + 0.5×.
    let r = c
        .get(fx.url("/img/coffee.png"))
        .header("user-agent", HARVESTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-fixative-variant"], "transformed");
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert!(r.headers().get("etag").is_none() && r.headers().get("accept-ranges").is_none());
    assert!(
        r.headers()["x-robots-tag"]
            .to_str()
            .unwrap()
            .contains("noimageai")
    );
    let expected =
        u64::from_str_radix(r.headers()["x-fixative-watermark"].to_str().unwrap(), 16).unwrap();
    let variant = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((variant.width(), variant.height()), (512, 341));
    let key = watermark::key_from_secret(common::TEST_SECRET);
    let original = art("coffee.png");
    for (what, suspect) in [
        ("as served", variant.clone()),
        ("after q70 + 0.5x", jpeg_half_q70(&variant)),
    ] {
        let d = watermark::detect(&suspect, &original, key, watermark::DEFAULT_STRENGTH);
        assert!(d.valid, "{what}: {d:?}");
        assert_eq!(d.payload, expected, "{what}");
    }
    let fields = watermark::Payload::from_bits(expected);
    assert_eq!(u32::from(fields.site), watermark::hash_bits("a", 12));
    assert_eq!(fields.client, watermark::hash_bits("127.0.0.0", 20));
    // The people's copy carries no mark.
    assert!(!watermark::detect(&people, &original, key, watermark::DEFAULT_STRENGTH).valid);

    // Repeated hits come from the cache.
    let r = c
        .get(fx.url("/img/coffee.png"))
        .header("user-agent", HARVESTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-fixative-cache"], "hit");
    assert!(fx.metric_eventually("fixative_protector_cache_total{result=\"hit\"}", 1.0) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_variant_is_served_when_the_origin_has_one() {
    let origin = Origin::start("a").await;
    let fx = start(&origin, "");
    let r = client()
        .get(fx.url("/img/rocket.jpg"))
        .header("user-agent", HARVESTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fixative-variant"], "prepared");
    assert_eq!(r.headers()["content-type"], "image/png");
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(img.to_rgb8(), art("brick.png").to_rgb8());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_and_garbage_get_the_fallback_without_harming_others() {
    let origin = Origin::start("a").await;
    let fx = start(&origin, "");
    let c = client();
    for name in ["bomb.png", "broken.jpg"] {
        let t = Instant::now();
        let (bad, good) = tokio::join!(
            c.get(fx.url(&format!("/img/{name}")))
                .header("user-agent", HARVESTER)
                .send(),
            c.get(fx.url("/plain")).send()
        );
        let bad = bad.unwrap();
        assert_eq!(bad.status(), 503, "{name}");
        assert_eq!(bad.headers()["retry-after"], "5");
        assert_eq!(good.unwrap().status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        fx.metric_eventually(
            "fixative_protector_fallbacks_total{reason=\"undecodable\"}",
            2.0
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_falls_back_without_stalling_normal_traffic() {
    let origin = Origin::start("a").await;
    let _ = common::big_png();
    let fx = start(&origin, "workers = 1\nqueue = 0");
    let c = client();
    let mut cloaks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let url = fx.url(&format!("/img/big-{i}.png"));
        cloaks.push(tokio::spawn(async move {
            c.get(url)
                .header("user-agent", HARVESTER)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let r = c.get(fx.url("/plain")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "normal request stalled {:?}",
        t.elapsed()
    );
    let mut statuses = Vec::new();
    for h in cloaks {
        statuses.push(h.await.unwrap().unwrap());
    }
    assert!(
        statuses.contains(&503),
        "{statuses:?} transform seconds sum {} count {}",
        fx.metric("fixative_protector_transform_seconds_sum"),
        fx.metric("fixative_protector_transform_seconds_count")
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        fx.metric_eventually(
            "fixative_protector_fallbacks_total{reason=\"queue_full\"}",
            1.0
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_degraded_fallback_serves_a_small_unmarked_copy_when_the_pool_is_full() {
    let origin = Origin::start("a").await;
    let _ = common::big_png();
    let fx = Fixative::start(
        "debug_headers = true\ntrusted_proxies = [\"127.0.0.0/8\"]",
        &format!(
            "{}{POLICY}\n[protector]\nsecret = \"test-only-watermark-key-0123456789\"\nworkers = 1\nqueue = 0\nfallback = \"degraded\"\n",
            site(
                "a",
                &["a.test"],
                &[origin.addr],
                "default = true\npolicy = \"cloaky\""
            )
        ),
    );
    let c = client();
    // One transform stores the small copy for this image.
    let r = c
        .get(fx.url("/img/big-0.png"))
        .header("user-agent", HARVESTER)
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-fixative-variant"], "transformed");
    // Clients from other networks need their own marks: the pool saturates.
    let mut reqs = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let url = fx.url("/img/big-0.png");
        reqs.push(tokio::spawn(async move {
            let r = c
                .get(url)
                .header("user-agent", HARVESTER)
                .header("x-forwarded-for", format!("203.0.{i}.1"))
                .send()
                .await
                .unwrap();
            let v = r
                .headers()
                .get("x-fixative-variant")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let img = image::load_from_memory(&r.bytes().await.unwrap()).ok();
            (status, v, img.map(|i| i.width().max(i.height())))
        }));
    }
    let mut seen = Vec::new();
    for r in reqs {
        seen.push(r.await.unwrap());
    }
    assert!(seen.iter().all(|(s, _, _)| *s == 200), "{seen:?}");
    let degraded: Vec<_> = seen
        .iter()
        .filter(|(_, v, _)| v.as_deref() == Some("degraded-fallback"))
        .collect();
    assert!(!degraded.is_empty(), "{seen:?}");
    assert!(
        degraded.iter().all(|(_, _, side)| *side == Some(256)),
        "{seen:?}"
    );
}

/// A transform that outlives `transform_timeout` keeps its worker until it
/// really ends: with one worker and no queue, the next image gets the
/// queue-full fallback at once instead of a second transform beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_transforms_keep_their_worker_until_they_end() {
    let origin = Origin::start("a").await;
    let _ = common::big_png();
    let fx = start(
        &origin,
        "workers = 1\nqueue = 0\ntransform_timeout = \"20ms\"",
    );
    let c = client();
    let get = |name: &str| {
        c.get(fx.url(&format!("/img/{name}")))
            .header("user-agent", HARVESTER)
            .send()
    };
    let r = get("big-1.png").await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        fx.metric_eventually(
            "fixative_protector_fallbacks_total{reason=\"timeout\"}",
            1.0
        ) >= 1.0
    );
    // The first transform is still running on its blocking thread.
    let r = get("big-2.png").await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        fx.metric_eventually(
            "fixative_protector_fallbacks_total{reason=\"queue_full\"}",
            1.0
        ) >= 1.0
    );
    assert_eq!(
        fx.metric("fixative_protector_fallbacks_total{reason=\"timeout\"}"),
        1.0,
        "a second transform ran beside the first"
    );
}

/// The crafted PNG of the hardening issue (an XMP `iTXt` chunk cut right
/// after its keyword) is served on both paths that insert metadata: to a
/// person (buffered metadata insertion) and, as a prepared variant, to a
/// scraper. Before the fix, both requests got an empty reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_pngs_are_served_on_both_metadata_paths() {
    let origin = Origin::start("a").await;
    let fx = start(&origin, "");
    let c = client();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let original = std::fs::read(root.join("png-itxt-xmp-cut.png")).unwrap();
    let pixels = |b: &[u8]| image::load_from_memory(b).unwrap().to_rgba8().into_raw();
    // A person: the original pixels, with our statement.
    let r = c
        .get(fx.url("/img/hostile/png-itxt-xmp-cut.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(pixels(&body), pixels(&original));
    assert!(String::from_utf8_lossy(&body).contains("DMI-PROHIBITED"));
    // A scraper: the prepared variant (the same crafted file).
    let r = c
        .get(fx.url("/img/hostile/png-itxt-xmp-cut.png"))
        .header("user-agent", HARVESTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fixative-variant"], "prepared");
    let body = r.bytes().await.unwrap();
    assert_eq!(pixels(&body), pixels(&original));
    // Every other crafted file passes through (or gets the fallback), and
    // the proxy keeps serving.
    for e in std::fs::read_dir(&root).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        for ua in ["Mozilla/5.0", HARVESTER] {
            let r = c
                .get(fx.url(&format!("/img/hostile/{name}")))
                .header("user-agent", ua)
                .send()
                .await
                .unwrap();
            assert!(
                r.status() == 200 || r.status() == 503,
                "{name} ({ua}): {}",
                r.status()
            );
            let _ = r.bytes().await.unwrap();
        }
    }
    assert_eq!(c.get(fx.url("/plain")).send().await.unwrap().status(), 200);
}
