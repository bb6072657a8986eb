//! Web Bot Auth key directories, fetched off the request path.
//!
//! The engine verifies signatures against the keys it knows
//! ([`fixative_rules::botauth::Directory`]); when a signed agent's keys are
//! not known yet, its verdict says so and the request goes on unverified
//! (the first request never waits for a fetch). This module then fetches
//! `https://<agent>/.well-known/http-message-signatures-directory` in the
//! background: one fetch per agent at a time, at most [`MAX_IN_FLIGHT`]
//! agents at once, a failed agent retried after [`RETRY_AFTER`], bodies
//! capped at [`fixative_rules::botauth::MAX_DIRECTORY_BYTES`], redirects
//! refused.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixative_rules::botauth::{DIRECTORY_PATH, Directory, MAX_DIRECTORY_BYTES};

/// Agents fetched at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// A failed fetch is not retried for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Failed agents remembered (least recently failed forgotten).
const MAX_FAILED: usize = 1024;

/// Fetches key directories in the background; outlives reloads.
pub struct Fetcher {
    in_flight: Mutex<HashSet<String>>,
    failed: Mutex<lru::LruCache<String, u64>>,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher {
            in_flight: Mutex::new(HashSet::new()),
            failed: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_FAILED).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }
}

/// The outcome of one fetch, for the metric.
pub fn outcome_label(r: &Result<usize, String>) -> &'static str {
    if r.is_ok() { "ok" } else { "error" }
}

impl Fetcher {
    /// Starts fetching `agent`'s directory unless it is known and fresh,
    /// being fetched, or failed recently. Never waits.
    pub fn request(
        self: &Arc<Self>,
        agent: &str,
        dir: &Arc<Directory>,
        cfg: &fixative_config::WebBotAuth,
        metrics: &Arc<crate::metrics::Metrics>,
    ) {
        let now = crate::challenge::unix_now();
        if !dir.needs_fetch(agent, now) {
            return;
        }
        if let Ok(mut failed) = self.failed.lock()
            && failed
                .get(agent)
                .is_some_and(|at| now.saturating_sub(*at) < RETRY_AFTER.as_secs())
        {
            return;
        }
        {
            let Ok(mut f) = self.in_flight.lock() else {
                return;
            };
            if f.len() >= MAX_IN_FLIGHT || !f.insert(agent.to_string()) {
                return;
            }
        }
        let me = self.clone();
        let dir = dir.clone();
        let agent = agent.to_string();
        let ca = cfg.ca_file.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let r = fetch(&agent, ca.as_deref())
                .await
                .and_then(|body| dir.insert(&agent, &body, crate::challenge::unix_now(), false));
            metrics
                .bot_auth_fetches
                .with_label_values(&[outcome_label(&r)])
                .inc();
            match &r {
                Ok(n) => tracing::info!("Web Bot Auth: {n} key(s) of {agent} loaded"),
                Err(e) => {
                    tracing::warn!("Web Bot Auth: cannot load the key directory of {agent}: {e}");
                    if let Ok(mut failed) = me.failed.lock() {
                        failed.put(agent.clone(), crate::challenge::unix_now());
                    }
                }
            }
            if let Ok(mut f) = me.in_flight.lock() {
                f.remove(&agent);
            }
        });
    }
}

/// GETs an agent's key directory.
pub async fn fetch(agent: &str, ca_file: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "Fixative/",
            env!("CARGO_PKG_VERSION"),
            " (Web Bot Auth)"
        ))
        .https_only(true);
    if let Some(path) = ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let url = format!("https://{agent}{DIRECTORY_PATH}");
    let mut resp = client
        .get(&url)
        .header(
            "accept",
            "application/http-message-signatures-directory+json, application/json",
        )
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DIRECTORY_BYTES {
            return Err(format!("{url}: larger than {MAX_DIRECTORY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing agent is fetched once, then not again for RETRY_AFTER;
    /// a known, fresh agent is never fetched.
    #[tokio::test]
    async fn failed_agents_wait_and_known_agents_are_not_fetched() {
        let metrics = Arc::new(crate::metrics::Metrics::new().expect("metrics"));
        let cfg = fixative_config::WebBotAuth::default();
        let dir = Arc::new(Directory::new(&cfg));
        let f = Arc::new(Fetcher::default());
        // Nothing listens on port 1: the fetch fails at once.
        for _ in 0..5 {
            f.request("127.0.0.1:1", &dir, &cfg, &metrics);
        }
        let errors = || metrics.bot_auth_fetches.with_label_values(&["error"]).get();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while errors() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(errors(), 1, "one fetch for five requests");
        f.request("127.0.0.1:1", &dir, &cfg, &metrics);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(errors(), 1, "retried before RETRY_AFTER");
        // Known and fresh: nothing to fetch.
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}]}"#;
        dir.insert(
            "known.example",
            jwks.as_bytes(),
            crate::challenge::unix_now(),
            false,
        )
        .expect("insert");
        f.request("known.example", &dir, &cfg, &metrics);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            errors() + metrics.bot_auth_fetches.with_label_values(&["ok"]).get(),
            1
        );
        assert!(f.in_flight.lock().map(|s| s.is_empty()).unwrap_or(false));
    }
}
