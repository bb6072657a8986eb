//! A bare Pingora proxy ([`fixative_proxy::baseline`]): the baseline
//! `benches/load.sh` measures Fixative against. Same Pingora version and
//! features, same allocator (mimalloc) and the same worker-thread count as
//! Fixative; it forwards every request to one upstream and does nothing
//! else (no detection, no rewrite, no log).
//!
//! ```sh
//! cargo run --release -p fixative-proxy --example bare_pingora -- 127.0.0.1:8081 127.0.0.1:8080 2
//! ```

#[cfg(not(feature = "count-allocs"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `--features count-allocs` (`ALLOCS=1 benches/load.sh`): the same
/// counting system allocator as Fixative's counting build, so that the two
/// figures compare; the count goes to standard error every 100 ms.
#[cfg(feature = "count-allocs")]
#[global_allocator]
static GLOBAL: fixative_proxy::metrics::CountingAlloc = fixative_proxy::metrics::CountingAlloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM [THREADS]");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    #[cfg(feature = "count-allocs")]
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let n = fixative_proxy::metrics::ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!("allocations {n}");
        }
    });
    fixative_proxy::baseline::run(&listen, &upstream, threads)
}
