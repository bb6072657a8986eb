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

#[test]
fn a_known_browser_request_allocates_nothing() {
    let e = Engine::with_default_config().unwrap();
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
