//! Criterion bench: the HTML rewrite of one page as `benches/load.sh`
//! serves it (a portfolio page of ~2.6 KB), per document: a new rewriter,
//! the page in one chunk, the end. The copy of the page is the floor a
//! proxy that does not rewrite pays. A second page has the head of a
//! typical CMS theme (60 tags: stylesheets, scripts, metas).

use std::hint::black_box;
use std::sync::{Arc, LazyLock};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fixative_proxy::html::{HtmlInjector, Injection};

fn page() -> Vec<u8> {
    let mut p = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portfolio</title></head><body><h1>Portfolio</h1>\n",
    );
    for b in [
        "astronaut.png",
        "brick.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
    ] {
        p.push_str(&format!(
            "<figure><img src=\"/art/{b}\" alt=\"{b}\"><figcaption>{b}, a study in light and texture</figcaption></figure>\n"
        ));
    }
    for _ in 0..12 {
        p.push_str("<p>Photographs and studies. All rights reserved; not for AI training.</p>\n");
    }
    p.push_str("</body></html>\n");
    p.into_bytes()
}

/// The same page with a head of 60 tags before `<body>`.
fn page_with_large_head() -> Vec<u8> {
    let mut head = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portfolio</title>\n",
    );
    for i in 0..20 {
        head.push_str(&format!(
            "<link rel=\"stylesheet\" href=\"/theme/css/part-{i}.css?v=3\" media=\"all\">\n<script src=\"/theme/js/part-{i}.js\" defer></script>\n<meta property=\"og:tag{i}\" content=\"portfolio, art, study {i}\">\n"
        ));
    }
    let page = page();
    let body = page
        .windows(6)
        .position(|w| w == b"</head")
        .map_or(&page[..], |i| &page[i..]);
    let mut p = head.into_bytes();
    p.extend_from_slice(body);
    p
}

/// Built once per configuration in the proxy; shared by every page.
fn injection() -> Arc<Injection> {
    static INJ: LazyLock<Arc<Injection>> = LazyLock::new(|| {
        Arc::new(Injection {
            robots: vec!["noai".into(), "noimageai".into()],
            tdm: Some(true),
            tdm_policy: None,
            license: Some("https://art.example/license.xml".into()),
            trap_path: Some("/.fixative/trap/".into()),
            prebuilt: Default::default(),
        })
    });
    INJ.clone()
}

/// One document through a new rewriter, in one chunk; the bytes out.
fn rewrite(doc: &[u8]) -> usize {
    let Some(mut r) = HtmlInjector::new(injection(), None, Some("utf-8")) else {
        return 0;
    };
    let n = r.write(doc).len();
    n + r.finish().len()
}

fn bench(c: &mut Criterion) {
    let page = page();
    let mut g = c.benchmark_group("html");
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("copy (no rewrite)", |b| {
        b.iter(|| black_box(page.clone()).len())
    });
    g.bench_function("new rewriter only", |b| {
        b.iter(|| HtmlInjector::new(injection(), None, Some("utf-8")).map(|mut r| r.finish().len()))
    });
    g.bench_function("rewrite page", |b| b.iter(|| rewrite(black_box(&page))));
    let large = page_with_large_head();
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("rewrite page, 60-tag head", |b| {
        b.iter(|| rewrite(black_box(&large)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
