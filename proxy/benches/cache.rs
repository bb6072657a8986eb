//! Criterion bench: a variant-cache hit (lookup + clone of the shared bytes)
//! in a cache holding 500 variants of 60 KB.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use fixative_proxy::cloak::{Variant, VariantCache};

fn bench(c: &mut Criterion) {
    let mut cache = VariantCache::new(64 * 1024 * 1024);
    let body = Bytes::from(vec![7u8; 60 * 1024]);
    let keys: Vec<String> = (0..500)
        .map(|i| {
            format!(
                "gallery\u{1}/art/{i}.jpg\u{1}\"etag-{i}\"\u{1}preview512\u{1}{:016x}",
                i * 7919
            )
        })
        .collect();
    for k in &keys {
        cache.put(
            k.clone(),
            Variant {
                bytes: body.clone(),
                content_type: "image/jpeg".into(),
                source: "preview",
                pref: None,
            },
        );
    }
    let cache = std::sync::Mutex::new(cache);
    let mut i = 0usize;
    c.bench_function("protector/cache hit", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let v = cache
                .lock()
                .ok()
                .and_then(|mut c| c.get(black_box(&keys[i])));
            black_box(v.map(|v| v.bytes.len()))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
