//! A bare Pingora proxy: the baseline Fixative is measured against
//! (`benches/load.sh` through the `bare_pingora` example, and the
//! allocation test of a whole proxied request). It forwards every request
//! to one upstream over HTTP/1.1 and does nothing else: no detection, no
//! rewrite, no log, no headers of its own, Pingora's default settings.

use async_trait::async_trait;
use pingora::prelude::*;

/// The proxy application: Pingora's default for every hook but the peer.
pub struct Bare {
    /// `host:port` of the one upstream.
    pub upstream: String,
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

/// Serves `listen`, forwarding to `upstream`, on `threads` worker threads;
/// never returns.
pub fn run(listen: &str, upstream: &str, threads: usize) -> ! {
    // Grace 0: stop at once when benches/load.sh is done (Pingora's
    // default graceful shutdown keeps serving for minutes after SIGTERM,
    // and the next run would share the machine with it).
    let conf = crate::server_conf("bare-pingora", threads, 0);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: upstream.to_string(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
