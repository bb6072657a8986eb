//! Background tasks: upstream health checks, SIGHUP reloads, and the
//! shutdown-signal policy.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};

use crate::state::Shared;

/// How often idle rate-limiter keys are dropped.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs TCP health checks of multi-upstream sites at the configured
/// interval, sweeps idle rate-limiter keys and exports state gauges.
pub struct HealthChecks {
    shared: Arc<Shared>,
    last_sweep: std::sync::Mutex<std::time::Instant>,
    /// The IP-range directory as last seen (file names, sizes, times).
    ranges_seen: std::sync::Mutex<Option<Vec<(std::ffi::OsString, u64, std::time::SystemTime)>>>,
}

/// The `*.json` files of a directory, with sizes and modification times.
fn dir_state(dir: &std::path::Path) -> Vec<(std::ffi::OsString, u64, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("json"))
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.file_name(), m.len(), m.modified().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The addresses to connect to to see each proxy listener (plain, TLS,
/// demo origin) accept: an unspecified address (`0.0.0.0`, `::`) is
/// reached on loopback of its family.
fn listener_addresses(config: &fixative_config::Config) -> Vec<std::net::SocketAddr> {
    let server = &config.server;
    server
        .listen
        .iter()
        .copied()
        .chain(server.tls.as_ref().map(|t| t.listen))
        .chain(config.demo.as_ref().map(|d| d.listen))
        .map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(match a {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            a
        })
        .collect()
}

/// Returns once a TCP connection to every address has succeeded (each
/// tried every 20 ms until it does; the connection is closed at once).
async fn wait_accepting(addrs: &[std::net::SocketAddr]) {
    const RETRY: std::time::Duration = std::time::Duration::from_millis(20);
    for a in addrs {
        loop {
            let tried = tokio::time::timeout(RETRY * 10, tokio::net::TcpStream::connect(a)).await;
            if matches!(tried, Ok(Ok(_))) {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

impl HealthChecks {
    /// Creates the task.
    pub fn new(shared: Arc<Shared>) -> Self {
        HealthChecks {
            shared,
            last_sweep: std::sync::Mutex::new(std::time::Instant::now()),
            ranges_seen: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Pingora binds each service's listeners in that service's own
        // thread, in no set order: ready (`/readyz`) only once every
        // proxy listener accepts connections, so that a load balancer
        // or a script never sends to a port that is not open yet.
        let listeners = listener_addresses(&self.shared.runtime.load().config);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = wait_accepting(&listeners) => {}
        }
        self.shared.ready.store(true, Ordering::Release);
        loop {
            let rt = self.shared.runtime.load_full();
            for site in rt.sites.iter().filter(|s| s.health_checked) {
                site.balancer.backends().run_health_check(true).await;
            }
            let interval = rt.config.server.health_check_interval;
            // Bounded state: drop idle limiter keys and export sizes.
            let now = std::time::Instant::now();
            if now.duration_since(*self.last_sweep.lock().unwrap_or_else(|e| e.into_inner()))
                >= SWEEP_EVERY
            {
                rt.engine.sweep(crate::challenge::unix_now());
                *self.last_sweep.lock().unwrap_or_else(|e| e.into_inner()) = now;
            }
            let now_unix = crate::challenge::unix_now() as i64;
            for (file, date) in rt.engine.ip_range_dates() {
                if let Some(t) = date {
                    self.shared
                        .metrics
                        .ip_ranges_age
                        .with_label_values(&[&file])
                        .set(now_unix.saturating_sub(t).max(0));
                }
            }
            // `fixative ip-ranges update` replaced lists: load them.
            if let Some(dir) = rt.config.detection.ip_ranges_dir.clone() {
                // Directory reads off the reactor.
                let d = dir.clone();
                let state = tokio::task::spawn_blocking(move || dir_state(&d))
                    .await
                    .unwrap_or_default();
                let changed = {
                    let mut seen = self.ranges_seen.lock().unwrap_or_else(|e| e.into_inner());
                    let changed = seen.as_ref().is_some_and(|s| *s != state);
                    *seen = Some(state);
                    changed
                };
                if changed {
                    tracing::info!("IP-range lists changed in {}; reloading", dir.display());
                    let shared = self.shared.clone();
                    let _ = tokio::task::spawn_blocking(move || shared.reload()).await;
                }
            }
            let sizes = rt.engine.state_sizes();
            let m = &self.shared.metrics;
            m.tracked_clients.set(sizes.tracked_clients as i64);
            m.limiter_overflow
                .with_label_values(&["aggregated"])
                .set(sizes.limiter_overflow.aggregated as i64);
            m.limiter_overflow
                .with_label_values(&["failed_open"])
                .set(sizes.limiter_overflow.failed_open as i64);
            for (policy, rule, n) in sizes.limiter_keys {
                m.limiter_keys
                    .with_label_values(&[&policy, &rule])
                    .set(n as i64);
            }
            drop(rt);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Reloads the configuration on SIGHUP.
pub struct ReloadOnHangup {
    shared: Arc<Shared>,
}

impl ReloadOnHangup {
    /// Creates the task.
    pub fn new(shared: Arc<Shared>) -> Self {
        ReloadOnHangup { shared }
    }
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP, reload with POST /-/reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the configuration");
                    let shared = self.shared.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || shared.reload()).await {
                        tracing::error!("reload task failed: {e}");
                    }
                }
            }
        }
    }
}

/// SIGTERM and SIGINT both shut down gracefully (in-flight requests get
/// the grace period); SIGQUIT hands the listeners to a new process
/// (Pingora's graceful upgrade).
pub struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (term, int, quit) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (term, int, quit) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: graceful shutdown");
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: graceful shutdown");
                ShutdownSignal::GracefulTerminate
            }
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: graceful upgrade");
                ShutdownSignal::GracefulUpgrade
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    #[test]
    fn unspecified_listeners_are_reached_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("c.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), ck.signing_key.serialize_pem()).unwrap();
        let config = fixative_config::Config::from_toml(
            "[server]\nlisten = [\"0.0.0.0:8080\", \"[::]:8081\", \"127.0.0.2:8082\"]\n\
             tls = { listen = \"0.0.0.0:8443\", cert = \"c.pem\", key = \"k.pem\" }\n\
             [demo]\nlisten = \"127.0.0.1:9000\"\n\
             [[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:9000\"]\n",
            "test.toml",
            Some(dir.path()),
        );
        let Ok(config) = config else {
            panic!("config: {config:?}");
        };
        let want: Vec<SocketAddr> = [
            "127.0.0.1:8080",
            "[::1]:8081",
            "127.0.0.2:8082",
            "127.0.0.1:8443",
            "127.0.0.1:9000",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(listener_addresses(&config), want);
    }

    #[tokio::test]
    async fn ready_waits_for_every_listener_to_accept() {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let late = TcpListener::bind("127.0.0.1:0").unwrap();
        let late_addr = late.local_addr().unwrap();
        drop(late);
        let addrs = [open.local_addr().unwrap(), late_addr];
        // One listener is not there: not ready, however long we wait.
        let waited = tokio::time::timeout(Duration::from_millis(400), wait_accepting(&addrs)).await;
        assert!(waited.is_err(), "ready with a listener missing");
        // It binds later: ready soon after.
        let bind_later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            TcpListener::bind(late_addr).unwrap()
        });
        let waited = tokio::time::timeout(Duration::from_secs(10), wait_accepting(&addrs)).await;
        assert!(waited.is_ok(), "not ready although every listener accepts");
        drop(bind_later.join());
    }
}
