//! Quality report over the repository's real photographs.
//!
//! `cargo run --release -p fixative-protector --example quality_report`
//!
//! Per image: PSNR and SSIM of the full-size watermarked variant against
//! the original, and whether the payload is recovered exactly after each
//! attack; then the same detector run on *unmarked* copies after the same
//! attacks, which must never report a mark.

use std::io::Cursor;

use fixative_protector::pipeline::{self, Job, Limits, Transform};
use fixative_protector::watermark::{self, DEFAULT_STRENGTH};
use image::{DynamicImage, ImageFormat, imageops::FilterType};

fn jpeg(img: &DynamicImage, q: u8) -> DynamicImage {
    let mut out = Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q);
    img.to_rgb8().write_with_encoder(enc).expect("encode");
    image::load_from_memory(&out.into_inner()).expect("decode")
}

fn half(img: &DynamicImage) -> DynamicImage {
    img.resize_exact(img.width() / 2, img.height() / 2, FilterType::Triangle)
}

fn crop5(img: &DynamicImage) -> DynamicImage {
    // 5% off in total: 2.5% from each edge.
    let (w, h) = (img.width(), img.height());
    let (dx, dy) = (w * 25 / 1000, h * 25 / 1000);
    img.crop_imm(dx, dy, w - 2 * dx, h - 2 * dy)
}

fn img2dataset(img: &DynamicImage) -> DynamicImage {
    // img2dataset defaults: image_size 256, resize_mode "border" (fit the
    // long side, pad to a square with black), JPEG quality 95.
    let fitted = img.resize(256, 256, FilterType::Lanczos3);
    let mut canvas = image::RgbImage::new(256, 256);
    let (ox, oy) = ((256 - fitted.width()) / 2, (256 - fitted.height()) / 2);
    image::imageops::overlay(&mut canvas, &fitted.to_rgb8(), i64::from(ox), i64::from(oy));
    jpeg(&DynamicImage::ImageRgb8(canvas), 95)
}

type Attack = (&'static str, fn(&DynamicImage) -> DynamicImage);

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/assets/art");
    let attacks: [Attack; 6] = [
        ("none", |i| i.clone()),
        ("jpeg q70", |i| jpeg(i, 70)),
        ("0.5x", half),
        ("0.5x + q70", |i| jpeg(&half(i), 70)),
        ("crop 5% + 0.5x + q70", |i| jpeg(&half(&crop5(i)), 70)),
        ("img2dataset 256 q95", img2dataset),
    ];
    let key = 0x5eed_0000_f1c5_a71f;
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .expect("art dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("png" | "jpg")))
        .collect();
    names.sort();
    let (mut recovered, mut total, mut false_pos, mut psnr_min) = (0, 0, 0, f64::MAX);
    println!(
        "{:<16} {:>8} {:>7}  recovery after: {}",
        "image",
        "PSNR dB",
        "SSIM",
        attacks.iter().map(|a| a.0).collect::<Vec<_>>().join(" | ")
    );
    for path in names {
        let data = std::fs::read(&path).expect("read");
        let original = image::load_from_memory(&data).expect("decode");
        let payload = watermark::Payload {
            site: 0x2a1,
            client: 0x9_1234,
            class: 3,
            hour: 16_000,
        }
        .to_bits();
        let out = pipeline::protect(&Job {
            data: &data,
            transform: Transform::watermark(),
            payload,
            key,
            data_mining: "DMI-PROHIBITED-AIMLTRAINING",
            jpeg_quality: 95,
            limits: Limits::default(),
        })
        .expect("protect");
        let marked = image::load_from_memory_with_format(
            &out.bytes,
            ImageFormat::from_mime_type(out.content_type).expect("mime"),
        )
        .expect("decode variant");
        let p = pipeline::psnr(&original.to_rgb8(), &marked.to_rgb8());
        let s = pipeline::ssim(&original, &marked);
        psnr_min = psnr_min.min(p);
        let mut cells = Vec::new();
        for (_, attack) in &attacks {
            let d = watermark::detect(&attack(&marked), &original, key, DEFAULT_STRENGTH);
            let ok = d.valid && d.payload == payload;
            total += 1;
            recovered += usize::from(ok);
            cells.push(format!(
                "{} ({:.2}/{:.2})",
                if ok { "yes" } else { "NO" },
                d.correlation,
                d.agreement
            ));
            let u = watermark::detect(&attack(&original), &original, key, DEFAULT_STRENGTH);
            false_pos += usize::from(u.valid);
        }
        println!(
            "{:<16} {:>8.2} {:>7.4}  {}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            p,
            s,
            cells.join(" | ")
        );
    }
    println!(
        "\nexact recovery: {recovered}/{total} ({:.1}%); unmarked reported as marked: {false_pos}/{total}; lowest PSNR {psnr_min:.2} dB",
        100.0 * recovered as f64 / total.max(1) as f64
    );
}
