//! The common path allocates nothing: a browser request from a known
//! client, evaluated with the full catalog and the default policy.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fixative_rules::{Engine, RequestFacts};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_known_browser_request_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Browser versions judged as of a fixed day, so the test never ages.
    let e = Engine::with_default_config()
        .unwrap()
        .as_of("2026-11-25")
        .unwrap();
    let headers = [
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
        ("sec-fetch-mode", "navigate"),
    ];
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let facts = |t: u64| RequestFacts {
        now: Duration::from_millis(t),
        client_ip: "198.51.100.20".parse().unwrap(),
        method: "GET",
        host: "gallery.example",
        path: "/gallery/2024/",
        user_agent: Some(ua),
        headers_known: true,
        header: &headers,
        http10: false,
        rdns: fixative_rules::Rdns::Unknown,
        unix_time: 0,
        known: fixative_rules::Known::default(),
    };
    // The first request creates the client's state (behaviour, limiter key).
    let first = e.evaluate(&facts(1000), "default");
    assert_eq!(first.score, 0);
    let before = ALLOCS.load(Ordering::SeqCst);
    for t in 0..100 {
        let v = e.evaluate(&facts(1100 + t * 10), "default");
        assert_eq!(v.score, 0);
        drop(v);
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "allocations on the common path");
}

/// Chrome's HTTP/1.1 header section, in its order and casing.
struct ChromeH1 {
    headers: [(&'static str, &'static str); 7],
    raw: &'static [u8],
}

impl fixative_rules::HeaderLookup for ChromeH1 {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
    fn raw(&self) -> Option<&[u8]> {
        Some(self.raw)
    }
}

/// The same for an image with an extension, with the header fingerprint
/// computed from the raw header bytes.
#[test]
fn an_image_request_with_a_fingerprint_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Engine::with_default_config()
        .unwrap()
        .as_of("2026-11-25")
        .unwrap();
    let h = ChromeH1 {
        headers: [
            ("accept", "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"),
            ("accept-language", "en-GB,en;q=0.9"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "image"),
            ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Google Chrome\";v=\"131\""),
            ("sec-ch-ua-mobile", "?0"),
        ],
        raw: b"GET /art/piece.jpg HTTP/1.1\r\nHost: gallery.example\r\nConnection: keep-alive\r\nsec-ch-ua: \"Chromium\";v=\"131\", \"Google Chrome\";v=\"131\"\r\nsec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nAccept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-GB,en;q=0.9\r\n\r\n",
    };
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let facts = |t: u64, path: &'static str| RequestFacts {
        now: Duration::from_millis(t),
        client_ip: "198.51.100.21".parse().unwrap(),
        method: "GET",
        host: "gallery.example",
        path,
        user_agent: Some(ua),
        headers_known: true,
        header: &h,
        http10: false,
        rdns: fixative_rules::Rdns::Unknown,
        unix_time: 0,
        known: fixative_rules::Known::default(),
    };
    let first = e.evaluate(&facts(1000, "/gallery/"), "default");
    assert_eq!(first.score, 0, "{first:?}");
    let before = ALLOCS.load(Ordering::SeqCst);
    for t in 0..10 {
        let v = e.evaluate(&facts(1100 + t * 10, "/art/piece.jpg"), "default");
        assert_eq!(v.score, 0, "{v:?}");
        drop(v);
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "allocations on the image path");
}
