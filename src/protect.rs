//! `fixative protector cloak|detect`: the image protector from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fixative_protector::pipeline::{self, Job, Limits, Transform};
use fixative_protector::watermark::{self, DEFAULT_STRENGTH, Payload};

use fixative_protector::watermark::key_from_secret as key_of;

/// `protector cloak IN OUT`.
pub fn cloak(
    cfg: &fixative_config::Config,
    input: &Path,
    output: &Path,
    profile: &str,
    payload: Option<&str>,
    secret: Option<&str>,
) -> ExitCode {
    let Some(p) = cfg.protector.profiles.get(profile) else {
        let known: Vec<&str> = cfg.protector.profiles.keys().map(String::as_str).collect();
        eprintln!("unknown profile {profile:?} (known: {})", known.join(", "));
        return ExitCode::from(2);
    };
    // A prepared variant (the `variant` step) is an origin file: offline,
    // the profile's transform is what can be applied.
    let transform = Transform {
        max_side: p.max_side,
        visible_mark: p.visible_mark,
        watermark: p.watermark.then_some(DEFAULT_STRENGTH),
    };
    let secret = match secret {
        Some(s) => s,
        None if cfg.protector.secret.is_empty() || cfg.protector.secret_generated => {
            eprintln!(
                "no watermark key: give --secret, or --config with protector.secret set (generate one with `fixative secret`)"
            );
            return ExitCode::from(2);
        }
        None => &cfg.protector.secret,
    };
    let payload = match payload.map(|p| u64::from_str_radix(p.trim_start_matches("0x"), 16)) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("--payload: not a 64-bit hex number: {e}");
            return ExitCode::from(2);
        }
    };
    let data = match std::fs::read(input) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: {e}", input.display());
            return ExitCode::from(2);
        }
    };
    let job = Job {
        data: &data,
        transform,
        payload,
        key: key_of(secret),
        data_mining: "DMI-PROHIBITED-AIMLTRAINING",
        jpeg_quality: cfg.protector.jpeg_quality.max(90),
        limits: Limits::default(),
    };
    match pipeline::protect(&job) {
        Ok(out) => match std::fs::write(output, &out.bytes) {
            Ok(()) => {
                println!(
                    "{}: {}×{} {} with payload {payload:016x}",
                    output.display(),
                    out.width,
                    out.height,
                    out.content_type
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", output.display());
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{}: {e}", input.display());
            ExitCode::FAILURE
        }
    }
}

fn load(p: &Path) -> Result<image::DynamicImage, String> {
    let data = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    pipeline::decode(&data, &Limits::default())
        .map(|(i, _)| i)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// `protector detect IMAGE`.
pub fn detect(
    image: &Path,
    original: Option<&Path>,
    originals: Option<&Path>,
    secret: &str,
    json: bool,
) -> ExitCode {
    let suspect = match load(image) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // The original: given, or the nearest by perceptual hash in a directory.
    let (orig_path, orig): (PathBuf, image::DynamicImage) = match (original, originals) {
        (Some(p), _) => match load(p) {
            Ok(i) => (p.to_path_buf(), i),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(dir)) => {
            let target = watermark::dhash(&watermark::trim_borders(&suspect));
            let mut best: Option<(u32, PathBuf, image::DynamicImage)> = None;
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("{}: {e}", dir.display());
                    return ExitCode::from(2);
                }
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if let Ok(img) = load(&p) {
                    let d = (watermark::dhash(&img) ^ target).count_ones();
                    if best.as_ref().is_none_or(|b| d < b.0) {
                        best = Some((d, p, img));
                    }
                }
            }
            match best {
                Some((_, p, i)) => (p, i),
                None => {
                    eprintln!("{}: no image to compare with", dir.display());
                    return ExitCode::from(2);
                }
            }
        }
        (None, None) => {
            eprintln!("detection is informed: give --original FILE or --originals DIR");
            return ExitCode::from(2);
        }
    };
    let d = watermark::detect(&suspect, &orig, key_of(secret), DEFAULT_STRENGTH);
    let fields = Payload::from_bits(d.payload);
    if json {
        let v = serde_json::json!({
            "marked": d.valid,
            "payload": format!("{:016x}", d.payload),
            "check_ok": d.check_ok,
            "correlation": d.correlation,
            "agreement": d.agreement,
            "cells_seen": d.cells_seen,
            "original": orig_path.display().to_string(),
            "fields": if d.valid { serde_json::json!({
                "site": fields.site, "client": fields.client, "class": fields.class, "hour": fields.hour
            }) } else { serde_json::Value::Null },
        });
        println!("{v}");
    } else if d.valid {
        println!("mark found (original {})", orig_path.display());
        println!("payload:    {:016x}", d.payload);
        println!("site:       {:03x}", fields.site);
        println!("client:     {:05x}", fields.client);
        println!("class:      {}", fields.class);
        println!("hour:       {} (hours since 2025-01-01 UTC)", fields.hour);
        println!(
            "confidence: correlation {:.2}, agreement {:.2}, {} cells",
            d.correlation, d.agreement, d.cells_seen
        );
    } else {
        println!(
            "no mark found (original {}; correlation {:.2}, agreement {:.2}, check code {})",
            orig_path.display(),
            d.correlation,
            d.agreement,
            if d.check_ok { "valid" } else { "invalid" }
        );
    }
    ExitCode::SUCCESS
}
