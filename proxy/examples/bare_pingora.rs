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

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let conf = ServerConf {
        threads,
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
