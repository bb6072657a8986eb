//! Signed C2PA manifests read back by the `c2pa` crate's own reader and,
//! independently, by exiftool (which parses the JUMBF boxes itself).

use std::io::Cursor;
use std::process::Command;

use fixative_protector::c2pa::{LABEL, Signer, TrainingMining};

#[path = "support/credential.rs"]
mod support;
use support::credential;

fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([x as u8, y as u8, 77]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 3, y as u8 * 3, 7]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The manifest as the c2pa crate reads it, trusting `ca`.
fn read(bytes: &[u8], mime: &str, ca: &str) -> (serde_json::Value, String, Vec<String>) {
    let settings = serde_json::json!({"trust": {"trust_anchors": ca}}).to_string();
    let ctx = c2pa::Context::new()
        .with_settings(settings.as_str())
        .unwrap();
    let r = c2pa::Reader::from_context(ctx)
        .with_stream(mime, Cursor::new(bytes))
        .unwrap();
    let m = r.active_manifest().expect("a manifest");
    let tm = m
        .assertions()
        .iter()
        .find(|a| a.label() == LABEL)
        .expect("the training-mining assertion")
        .value()
        .unwrap()
        .clone();
    let failures = r
        .validation_status()
        .unwrap_or(&[])
        .iter()
        .map(|s| s.code().to_string())
        .collect();
    (tm, format!("{:?}", r.validation_state()), failures)
}

#[test]
fn signed_jpeg_and_png_carry_the_assertion_and_validate() {
    let (chain, key, ca) = credential();
    let s = Signer::from_pem(chain.as_bytes(), key.as_bytes(), "ed25519", "Fixative").unwrap();
    let deny = TrainingMining::default();
    let allow_inference = TrainingMining {
        ai_inference: true,
        ..deny
    };
    for (bytes, mime, tm) in [
        (jpeg(), "image/jpeg", deny),
        (png(), "image/png", allow_inference),
    ] {
        let signed = s.sign(&bytes, mime, tm).unwrap();
        let (value, state, failures) = read(&signed, mime, &ca);
        assert_eq!(value, tm.to_json(), "{mime}");
        assert_eq!(value["entries"]["cawg.ai_training"]["use"], "notAllowed");
        assert_eq!(
            value["entries"]["cawg.ai_inference"]["use"],
            if tm.ai_inference {
                "allowed"
            } else {
                "notAllowed"
            }
        );
        assert!(failures.is_empty(), "{mime}: {failures:?}");
        assert!(state == "Trusted" || state == "Valid", "{mime}: {state}");
        // The pixels are untouched: the manifest only adds a segment/chunk.
        let a = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let b = image::load_from_memory(&signed).unwrap().to_rgb8();
        assert_eq!(a.as_raw(), b.as_raw(), "{mime}");
    }
}

#[test]
fn a_changed_byte_breaks_the_manifest_and_exiftool_sees_it() {
    let (chain, key, ca) = credential();
    let s = Signer::from_pem(chain.as_bytes(), key.as_bytes(), "ed25519", "Fixative").unwrap();
    let signed = s
        .sign(&jpeg(), "image/jpeg", TrainingMining::default())
        .unwrap();
    // Independent reader: exiftool parses the JUMBF boxes on its own.
    let dir = std::env::temp_dir().join(format!("fixative-c2pa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("signed.jpg");
    std::fs::write(&p, &signed).unwrap();
    let out = Command::new("exiftool")
        .args(["-a", "-G1", "-JUMDLabel"])
        .arg(&p)
        .output()
        .expect("exiftool is needed: `./dev test` installs it");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("c2pa"), "{text}");
    assert!(text.contains(LABEL), "exiftool sees no {LABEL}: {text}");
    let _ = std::fs::remove_dir_all(&dir);
    // Flip one byte of the image data (near the end, before EOI).
    let mut bad = signed.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x55;
    let (_, state, failures) = read(&bad, "image/jpeg", &ca);
    assert_eq!(state, "Invalid");
    assert!(
        failures.iter().any(|f| f == "assertion.dataHash.mismatch"),
        "{failures:?}"
    );
}

#[test]
fn credentials_readers_would_reject_fail_at_load() {
    let (chain, key, _) = credential();
    // A self-signed end-entity certificate: refused.
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let selfsigned = rcgen::CertificateParams::new(vec!["x.example".into()])
        .unwrap()
        .self_signed(&k)
        .unwrap();
    assert!(
        Signer::from_pem(
            selfsigned.pem().as_bytes(),
            k.serialize_pem().as_bytes(),
            "ed25519",
            "F"
        )
        .is_err()
    );
    // The wrong algorithm for the key.
    assert!(Signer::from_pem(chain.as_bytes(), key.as_bytes(), "es256", "F").is_err());
    assert!(Signer::from_pem(chain.as_bytes(), key.as_bytes(), "rot13", "F").is_err());
    assert!(Signer::from_pem(b"not pem", key.as_bytes(), "ed25519", "F").is_err());
    // A signing certificate without an organization: readers reject its
    // manifests (claimSignature.mismatch), so loading it fails.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "no-org.example");
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::EmailProtection];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&k, &issuer).unwrap();
    let chain = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
    let err = Signer::from_pem(
        chain.as_bytes(),
        k.serialize_pem().as_bytes(),
        "ed25519",
        "F",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("claimSignature.mismatch"), "{err}");
}
