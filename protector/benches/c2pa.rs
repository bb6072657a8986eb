//! The cost of signing one image with a C2PA manifest (XMP inserted first,
//! as the proxy does), against inserting the XMP packet alone, measured in
//! the same run: a ~200 KiB web JPEG and a 12 MP camera JPEG.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fixative_protector::c2pa::{Signer, TrainingMining};

#[path = "../tests/support/credential.rs"]
mod support;

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/assets/art/coffee.png");
    let img = image::open(root)
        .expect("photo")
        .resize_exact(w, h, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.encode(
        img.as_raw(),
        w as u16,
        h as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .expect("jpeg");
    out
}

fn bench(c: &mut Criterion) {
    let (chain, key, _) = support::credential();
    let signer =
        Signer::from_pem(chain.as_bytes(), key.as_bytes(), "ed25519", "bench").expect("signer");
    let mut g = c.benchmark_group("c2pa");
    g.sample_size(20);
    for (name, w, h) in [("web 1200x800", 1200, 800), ("camera 12 MP", 4000, 3000)] {
        let data = jpeg(w, h);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(
            format!("xmp only ({name}, {} KiB)", data.len() / 1024),
            |b| {
                b.iter(|| {
                    fixative_protector::xmp::insert(black_box(&data), "DMI-PROHIBITED-AIMLTRAINING")
                })
            },
        );
        g.bench_function(
            format!("xmp + c2pa sign ({name}, {} KiB)", data.len() / 1024),
            |b| {
                b.iter(|| {
                    let x = fixative_protector::xmp::insert(
                        black_box(&data),
                        "DMI-PROHIBITED-AIMLTRAINING",
                    )
                    .expect("xmp");
                    signer
                        .sign(&x, "image/jpeg", TrainingMining::default())
                        .expect("sign")
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
