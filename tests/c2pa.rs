//! Signed no-train assertions through the real proxy: a site with
//! `directives.c2pa` serves its images with a C2PA manifest holding the
//! CAWG training-and-data-mining assertion of each path's preference, read
//! back by the `c2pa` crate's reader (trusting the test CA) and checked by
//! exiftool; signed once per image version; cloaked variants signed too;
//! a credential readers would reject is refused by `check`.

mod common;

use std::io::Cursor;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use common::{Fixative, client};

const PERSON: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(400, 300, |x, y| {
        image::Rgb([(x as u8).wrapping_add(seed), y as u8, 120])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// An origin serving a JPEG per path (ETag per path) and counting fetches.
async fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let hits = h2.clone();
        async move {
            let path = req.uri().path().to_string();
            // Only e.jpg has a variant the artist prepared.
            if !path.ends_with(".jpg")
                || (path.contains(".cloaked.") && path != "/art/e.cloaked.jpg")
            {
                return (axum::http::StatusCode::NOT_FOUND, "").into_response();
            }
            hits.fetch_add(1, Ordering::SeqCst);
            let mut h = HeaderMap::new();
            h.insert("content-type", "image/jpeg".parse().unwrap());
            h.insert("etag", format!("\"{}\"", path.len()).parse().unwrap());
            (h, jpeg(path.len() as u8)).into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, hits)
}

/// The training-mining entries as the c2pa crate reads them, the
/// validation state and failures.
fn manifest(bytes: &[u8], ca: &str) -> (serde_json::Value, String, Vec<String>) {
    let settings = serde_json::json!({"trust": {"trust_anchors": ca}}).to_string();
    let ctx = c2pa::Context::new()
        .with_settings(settings.as_str())
        .unwrap();
    let r = c2pa::Reader::from_context(ctx)
        .with_stream("image/jpeg", Cursor::new(bytes))
        .expect("a C2PA manifest");
    let m = r.active_manifest().expect("an active manifest");
    let tm = m
        .assertions()
        .iter()
        .find(|a| a.label() == "cawg.training-mining")
        .expect("cawg.training-mining")
        .value()
        .unwrap()["entries"]
        .clone();
    let failures = r
        .validation_status()
        .unwrap_or(&[])
        .iter()
        .map(|s| format!("{} {:?}", s.code(), s.explanation()))
        .collect();
    (tm, format!("{:?}", r.validation_state()), failures)
}

fn exiftool(bytes: &[u8], tag: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.jpg");
    std::fs::write(&p, bytes).unwrap();
    let out = Command::new("exiftool")
        .args(["-a", "-s3", tag])
        .arg(&p)
        .output()
        .expect("exiftool is needed: `./dev test` installs it");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_signed_once_per_version_with_the_paths_preference() {
    let (origin, hits) = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = common::c2pa_credential(dir.path());
    let rest = format!(
        r#"[[site]]
name = "art"
hosts = ["art.test"]
upstreams = ["{origin}"]
policy = "cloaky"
directives = {{ c2pa = true }}

[[site.preference]]
name = "licensed"
paths = ["/licensed/"]
train_ai = "allow"
ai_input = "allow"

[[site]]
name = "plain"
hosts = ["plain.test"]
upstreams = ["{origin}"]

[policy.cloaky]
[[policy.cloaky.rule]]
name = "cloak-ai"
match = {{ category = ["ai-training"] }}
action = "cloak"

[protector]
secret = "{}"
c2pa_cert = "c2pa-chain.pem"
c2pa_key = "c2pa-key.pem"
"#,
        common::TEST_SECRET
    );
    let fx = Fixative::start_in(dir, "debug_headers = true", &rest);
    let c = client();
    let get = |host: &'static str, path: &'static str, ua: &'static str| {
        let c = c.clone();
        let url = fx.url(path);
        async move {
            let r = c
                .get(url)
                .header("host", host)
                .header("user-agent", ua)
                .header("accept", "image/avif,image/webp,*/*")
                .send()
                .await
                .unwrap();
            let h = r.headers().clone();
            (r.status().as_u16(), h, r.bytes().await.unwrap().to_vec())
        }
    };

    // A person: the original, signed; training and mining not allowed.
    let (status, h, body) = get("art.test", "/art/a.jpg", PERSON).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-fixative-c2pa"], "signed");
    let (tm, state, failures) = manifest(&body, &ca);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(state == "Trusted" || state == "Valid", "{state}");
    for k in [
        "cawg.ai_training",
        "cawg.ai_generative_training",
        "cawg.ai_inference",
        "cawg.data_mining",
    ] {
        assert_eq!(tm[k]["use"], "notAllowed", "{k}: {tm}");
    }
    // Same pixels as the origin's; XMP inserted before signing.
    let original = jpeg("/art/a.jpg".len() as u8);
    assert_eq!(
        image::load_from_memory(&body).unwrap().to_rgb8().as_raw(),
        image::load_from_memory(&original)
            .unwrap()
            .to_rgb8()
            .as_raw()
    );
    assert!(exiftool(&body, "-XMP-plus:DataMining").ends_with("DMI-PROHIBITED-AIMLTRAINING"));
    assert!(exiftool(&body, "-JUMDLabel").contains("cawg.training-mining"));
    // The same image again: from the cache, not signed again.
    let (_, h, again) = get("art.test", "/art/a.jpg", PERSON).await;
    assert_eq!(h["x-fixative-c2pa"], "hit");
    assert_eq!(again, body);
    // A licensed path: allowed.
    let (_, _, lic) = get("art.test", "/licensed/b.jpg", PERSON).await;
    let (tm, _, failures) = manifest(&lic, &ca);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(tm["cawg.ai_training"]["use"], "allowed");
    assert_eq!(tm["cawg.ai_inference"]["use"], "allowed");
    // A cloaked variant for an AI crawler: signed as well.
    let (status, h, cloaked) = get("art.test", "/art/c.jpg", "GPTBot/1.2").await;
    assert_eq!(status, 200);
    assert_eq!(h["x-fixative-variant"], "transformed");
    let (tm, _, failures) = manifest(&cloaked, &ca);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(tm["cawg.ai_training"]["use"], "notAllowed");
    // A variant the artist prepared: signed as well.
    let (_, h, prepared) = get("art.test", "/art/e.jpg", "GPTBot/1.2").await;
    assert_eq!(h["x-fixative-variant"], "prepared");
    let (tm, _, failures) = manifest(&prepared, &ca);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(tm["cawg.data_mining"]["use"], "notAllowed");
    // A site without c2pa: streamed, unsigned.
    let (status, _, plain) = get("plain.test", "/art/d.jpg", PERSON).await;
    assert_eq!(status, 200);
    assert!(exiftool(&plain, "-JUMDLabel").is_empty());
    // Signed once per image version: a.jpg, b.jpg and the prepared
    // e.cloaked.jpg (the preview is signed inside its transform).
    assert_eq!(fx.metric("fixative_c2pa_sign_seconds_count"), 3.0);
    assert!(hits.load(Ordering::SeqCst) >= 4);
}

#[test]
fn check_refuses_a_credential_readers_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    // A self-signed end-entity certificate breaks the C2PA profile.
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.example".into()])
        .unwrap()
        .self_signed(&k)
        .unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), k.serialize_pem()).unwrap();
    let cfg = dir.path().join("f.toml");
    // `fixative check` on a site signing images, with `protector` lines.
    let check = |protector: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:9\"]\ndirectives = {{ c2pa = true }}\n\n[protector]\nsecret = \"{}\"\n{protector}",
                common::TEST_SECRET
            ),
        )
        .unwrap();
        Command::new(common::bin())
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = check("c2pa_cert = \"c.pem\"\nc2pa_key = \"k.pem\"\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("protector.c2pa_cert"), "{err}");
    // c2pa on a site without a credential: named with key and line.
    let out = check("");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("site[0].directives.c2pa: signing images needs a credential")
            && err.contains("(line 5)"),
        "{err}"
    );
}

/// An image over `protector.max_input_bytes` is served as usual: streamed
/// with its XMP packet, unsigned, and the fallback counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_too_large_to_sign_is_served_unsigned() {
    let (origin, _) = origin().await;
    let dir = tempfile::tempdir().unwrap();
    common::c2pa_credential(dir.path());
    let rest = format!(
        "[[site]]\nname = \"art\"\nhosts = [\"art.test\"]\nupstreams = [\"{origin}\"]\npolicy = \"off\"\ndirectives = {{ c2pa = true }}\n\n[protector]\nsecret = \"{}\"\nc2pa_cert = \"c2pa-chain.pem\"\nc2pa_key = \"c2pa-key.pem\"\nmax_input_bytes = 1024\n",
        common::TEST_SECRET
    );
    let fx = Fixative::start_in(dir, "", &rest);
    let r = client()
        .get(fx.url("/art/big.jpg"))
        .header("host", "art.test")
        .header("user-agent", PERSON)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(exiftool(&body, "-JUMDLabel").is_empty());
    assert!(exiftool(&body, "-XMP-plus:DataMining").ends_with("DMI-PROHIBITED-AIMLTRAINING"));
    assert_eq!(
        fx.metric_eventually(
            "fixative_protector_fallbacks_total{reason=\"too_large\"}",
            1.0
        ),
        1.0
    );
}
