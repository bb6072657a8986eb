//! A bare Pingora proxy: the baseline `benches/load.sh` measures Fixative
//! against. Same Pingora version and features, same allocator (mimalloc)
//! and the same worker-thread count as Fixative; it forwards every request
//! to one upstream and does nothing else (no detection, no rewrite, no log).
//!
//! ```sh
//! cargo run --release -p fixative-proxy --example bare_pingora -- 127.0.0.1:8081 127.0.0.1:8080 2
//! ```

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[cfg(not(feature = "count-allocs"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `--features count-allocs` (`ALLOCS=1 benches/load.sh`): the same
/// counting system allocator as Fixative's counting build, so that the two
/// figures compare; the count goes to standard error every 100 ms.
#[cfg(feature = "count-allocs")]
#[global_allocator]
static GLOBAL: fixative_proxy::metrics::CountingAlloc = fixative_proxy::metrics::CountingAlloc;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    /// Every request goes to the one upstream, over plain HTTP/1.1.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

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
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let conf = ServerConf {
        threads,
        // Stop at once when benches/load.sh is done (Pingora's default
        // graceful shutdown keeps serving for minutes after SIGTERM, and
        // the next run would share the machine with it).
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: tmp
            .join(format!("bare-pingora-{pid}.pid"))
            .display()
            .to_string(),
        upgrade_sock: tmp
            .join(format!("bare-pingora-{pid}.sock"))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
