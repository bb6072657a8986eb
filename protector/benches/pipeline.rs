//! Criterion benches: decode + transform + encode per format (reported per
//! megapixel of input), and a variant-cache-sized copy for comparison.

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fixative_protector::pipeline::{self, Job, Limits, Transform};
use image::{DynamicImage, ImageFormat, imageops::FilterType};

fn sample(format: ImageFormat) -> (Vec<u8>, u64) {
    sample_at(format, 1732, 1155)
}

fn sample_at(format: ImageFormat, w: u32, h: u32) -> (Vec<u8>, u64) {
    // A real photograph scaled to w×h.
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/assets/art/coffee.png");
    let img = image::open(root)
        .expect("photo")
        .resize_exact(w, h, FilterType::Triangle);
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
            img.to_rgb8().write_with_encoder(enc).expect("jpeg");
        }
        f => DynamicImage::ImageRgb8(img.to_rgb8())
            .write_to(&mut out, f)
            .expect("encode"),
    }
    (out.into_inner(), u64::from(w) * u64::from(h))
}

/// One protection job, as the proxy runs it.
fn protect(data: &[u8], transform: Transform) -> usize {
    let out = pipeline::protect(&Job {
        data: black_box(data),
        transform,
        payload: 0x0123_4567_89ab_cdef,
        key: 42,
        data_mining: "DMI-PROHIBITED-AIMLTRAINING",
        jpeg_quality: 90,
        limits: Limits::default(),
    })
    .expect("protect");
    black_box(out.bytes.len())
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("protector");
    g.sample_size(20);
    for (name, format) in [
        ("jpeg", ImageFormat::Jpeg),
        ("png", ImageFormat::Png),
        ("webp", ImageFormat::WebP),
    ] {
        let (data, pixels) = sample(format);
        g.throughput(Throughput::Elements(pixels));
        for (profile, transform) in [
            ("watermark", Transform::watermark()),
            ("preview", Transform::preview(512)),
        ] {
            g.bench_function(format!("{name}/{profile} (2 MP)"), |b| {
                b.iter(|| protect(&data, transform))
            });
        }
    }
    // A 12 MP camera-like JPEG: quality 90, 4:2:0 chroma subsampling, as
    // cameras and phones save them (the 2 MP samples above are 4:4:4).
    let (_, pixels) = sample_at(ImageFormat::Png, 4000, 3000);
    let data = {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/assets/art/coffee.png");
        let img = image::open(root)
            .expect("photo")
            .resize_exact(4000, 3000, FilterType::Triangle)
            .to_rgb8();
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        enc.encode(img.as_raw(), 4000, 3000, jpeg_encoder::ColorType::Rgb)
            .expect("jpeg");
        out
    };
    g.throughput(Throughput::Elements(pixels));
    for (profile, transform) in [
        ("watermark", Transform::watermark()),
        ("preview", Transform::preview(512)),
    ] {
        g.bench_function(format!("jpeg/{profile} (12 MP)"), |b| {
            b.iter(|| protect(&data, transform))
        });
    }
    // For comparison with the full-size watermark (DCT domain: no decode,
    // no encode): what the pixel path would pay, a decode and an encode at
    // the source's quality and subsampling.
    let limits = fixative_protector::pipeline::Limits::default();
    g.bench_function("jpeg/decode (12 MP)", |b| {
        b.iter(|| fixative_protector::pipeline::decode(&data, &limits).map(|(i, _)| i.width()))
    });
    if let Ok((img, _)) = fixative_protector::pipeline::decode(&data, &limits) {
        g.bench_function("jpeg/encode q90 4:2:0 (12 MP)", |b| {
            b.iter(|| {
                fixative_protector::pipeline::encode_sampled(
                    &img,
                    ImageFormat::Jpeg,
                    90,
                    Some((2, 2)),
                )
                .map(|v| v.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
