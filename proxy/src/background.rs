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
