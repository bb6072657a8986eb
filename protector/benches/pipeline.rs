//! Criterion benches: decode + transform + encode per format (reported per
//! megapixel of input), and a variant-cache-sized copy for comparison.

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fixative_protector::pipeline::{self, Job, Limits, Transform};
use image::{DynamicImage, ImageFormat, imageops::FilterType};

fn sample(format: ImageFormat) -> (Vec<u8>, u64) {
    // A real photograph scaled to 2 megapixels.
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/assets/art/coffee.png");
    let img = image::open(root)
        .expect("photo")
        .resize_exact(1732, 1155, FilterType::Triangle);
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
    (out.into_inner(), 1732 * 1155)
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
                b.iter(|| {
                    let out = pipeline::protect(&Job {
                        data: black_box(&data),
                        transform,
                        payload: 0x0123_4567_89ab_cdef,
                        key: 42,
                        data_mining: "DMI-PROHIBITED-AIMLTRAINING",
                        jpeg_quality: 90,
                        limits: Limits::default(),
                    })
                    .expect("protect");
                    black_box(out.bytes.len())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
