//! Process-wide shared state: the current runtime, metrics, reloading.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use fixative_config::Config;

use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// A request id: 16 lowercase hex digits, held inline (no allocation);
/// reads as a `&str` (`Deref`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; 16]);

impl RequestId {
    /// `x` as 16 lowercase hex digits.
    pub fn from_u64(x: u64) -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'0'; 16];
        for (i, d) in out.iter_mut().enumerate() {
            let nibble = (x >> (60 - 4 * i)) & 0xf;
            *d = HEX.get(nibble as usize).copied().unwrap_or(b'0');
        }
        RequestId(out)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State shared by the proxy, the admin listener and background tasks.
pub struct Shared {
    /// The runtime new requests use.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The file reloads re-read; `None` reloads the embedded default.
    pub config_path: Option<PathBuf>,
    /// Whether the proxy has finished starting.
    pub ready: std::sync::atomic::AtomicBool,
    /// Reverse-DNS verification (its cache outlives reloads).
    pub rdns: Arc<crate::rdns::RdnsVerifier>,
    /// TLS ClientHello facts of recent connections, by client address.
    pub hellos: Arc<crate::tlshello::HelloTable>,
    /// Solved challenges (single use; outlives reloads).
    pub spent: crate::challenge::Spent,
    /// Tarpitted responses in flight.
    pub tarpit: crate::tarpit::Tarpit,
    /// The fleet's shared state (or this node's, with the memory
    /// backend): outlives reloads.
    pub fleet: Arc<crate::fleet::FleetLink>,
    /// Live activity for the dashboard (outlives reloads).
    pub activity: crate::activity::Activity,
    /// The evidence ledger, when `[evidence]` is configured (restart-only).
    pub evidence: Option<fixative_evidence::Ledger>,
    /// Configuration generation: 1 at start, +1 per applied reload.
    pub generation: AtomicU64,
    /// The last reload: when (unix seconds), whether it applied, and its
    /// message.
    pub last_reload: std::sync::Mutex<Option<(u64, bool, String)>>,
    /// Web Bot Auth key-directory fetches (outlive reloads; the keys live
    /// in the engine's directory, which every generation shares).
    pub bot_auth: Arc<crate::botauth::Fetcher>,
    request_seed: u64,
    request_counter: AtomicU64,
}

/// Outcome of a reload.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new configuration is serving; its summary.
    Applied(String),
    /// Rejected; the old configuration keeps serving. The errors.
    Rejected(String),
}

impl Shared {
    /// Creates the shared state around a first runtime.
    pub fn new(
        runtime: Runtime,
        metrics: Arc<Metrics>,
        config_path: Option<PathBuf>,
        fleet: Arc<crate::fleet::FleetLink>,
        evidence: Option<fixative_evidence::Ledger>,
    ) -> Shared {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        let spent = crate::challenge::Spent::new(runtime.config.challenge.max_spent);
        Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            config_path,
            ready: std::sync::atomic::AtomicBool::new(false),
            rdns: Arc::new(crate::rdns::RdnsVerifier::new(Arc::new(
                crate::rdns::BlockingResolver::system(),
            ))),
            hellos: Arc::default(),
            spent,
            tarpit: crate::tarpit::Tarpit::default(),
            fleet,
            activity: crate::activity::Activity::new(),
            evidence,
            generation: AtomicU64::new(1),
            last_reload: std::sync::Mutex::new(None),
            bot_auth: Arc::default(),
            request_seed: h.finish(),
            request_counter: AtomicU64::new(0),
        }
    }

    /// A new request id: 16 hex digits, unique within the process and
    /// unpredictable across processes.
    pub fn next_request_id(&self) -> RequestId {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        // A bijective mix keeps ids unique while hiding the counter.
        let mut x = n ^ self.request_seed;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
        x ^= x >> 31;
        RequestId::from_u64(x)
    }

    /// Re-reads the configuration and swaps it in when valid.
    ///
    /// An invalid file is rejected with all its errors, logged and counted;
    /// the old configuration keeps serving. Settings that need a restart
    /// (listeners, threads, access-log destination) are reported.
    pub fn reload(&self) -> ReloadOutcome {
        let outcome = self.reload_inner();
        let (ok, msg) = match &outcome {
            ReloadOutcome::Applied(m) => (true, m.clone()),
            ReloadOutcome::Rejected(m) => (false, m.clone()),
        };
        if ok {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut l) = self.last_reload.lock() {
            *l = Some((crate::challenge::unix_now(), ok, msg));
        }
        outcome
    }

    fn reload_inner(&self) -> ReloadOutcome {
        let loaded = Config::load_or_default(self.config_path.as_deref());
        let config = match loaded {
            Ok(c) => c,
            Err(e) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                let msg = e.to_string();
                tracing::error!(
                    "configuration reload rejected; the previous configuration keeps serving\n{msg}"
                );
                return ReloadOutcome::Rejected(msg);
            }
        };
        let old = self.runtime.load();
        let restart_needed = restart_only_changes(&old.config, &config);
        let summary = config.summary();
        match Runtime::build(
            config,
            self.metrics.clone(),
            self.fleet.fleet.clone(),
            Some(old.engine.bot_auth().clone()),
        ) {
            Ok(rt) => {
                self.runtime.store(Arc::new(rt));
                self.metrics.reloads.with_label_values(&["success"]).inc();
                let mut msg = format!("configuration reloaded: {summary}");
                if !restart_needed.is_empty() {
                    msg.push_str(&format!(
                        "\nthese changes take effect only after a restart: {}",
                        restart_needed.join(", ")
                    ));
                }
                tracing::info!("{msg}");
                ReloadOutcome::Applied(msg)
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                tracing::error!("configuration reload rejected: {e}");
                ReloadOutcome::Rejected(e)
            }
        }
    }
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.server.listen != new.server.listen {
        v.push("server.listen");
    }
    if old.server.tls.as_ref().map(|t| (t.listen, &t.cert, &t.key))
        != new.server.tls.as_ref().map(|t| (t.listen, &t.cert, &t.key))
    {
        v.push("server.tls");
    }
    if old.server.admin != new.server.admin {
        v.push("server.admin");
    }
    if old.server.threads != new.server.threads {
        v.push("server.threads");
    }
    if old.server.grace_period != new.server.grace_period {
        v.push("server.grace_period");
    }
    if old.log.access != new.log.access {
        v.push("log.access");
    }
    if old.state != new.state {
        v.push("state");
    }
    if old.evidence != new.evidence {
        v.push("evidence");
    }
    if old.demo.as_ref().map(|d| d.listen) != new.demo.as_ref().map(|d| d.listen) {
        v.push("demo");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::RequestId;
    use proptest::prelude::*;

    proptest! {
        /// The inline id reads exactly as the formatted one it replaced.
        #[test]
        fn a_request_id_is_its_number_in_16_hex_digits(x in any::<u64>()) {
            let id = RequestId::from_u64(x);
            prop_assert_eq!(id.as_str(), format!("{x:016x}"));
            prop_assert_eq!(id.to_string(), format!("{x:016x}"));
        }
    }
}
