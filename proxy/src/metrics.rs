//! Prometheus metrics, on their own registry, served by the admin listener.
//!
//! Every label has bounded cardinality: site names come from the
//! configuration, actions and categories from fixed enums. Never IPs,
//! paths or user agents.

// The action labels, in the order `SiteMetrics` keeps them (the dashboard's).
use crate::activity::ACTIONS;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Allocations since start, counted only by a binary that installs
/// [`CountingAlloc`] (the `count-allocs` builds of `ALLOCS=1
/// benches/load.sh`); 0 otherwise, and then not exported.
pub static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The system allocator, counting every allocation into [`ALLOCATIONS`]:
/// the global allocator of the `count-allocs` builds of Fixative and of
/// the bare Pingora baseline, so that their figures compare (and valgrind's
/// DHAT sees every call site). Never installed in a release build.
pub struct CountingAlloc;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: `p` came from `alloc` above.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as `dealloc` and `alloc`.
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}

/// One site's per-request metric handles, resolved once per configuration
/// instead of per request (a label lookup hashes the labels and takes the
/// vector's lock): its duration histogram and upstream-error counter, and
/// its request counters by action and category, each made on first use
/// (so that only combinations that happened appear in `/metrics`).
pub struct SiteMetrics {
    site: String,
    duration: prometheus::Histogram,
    upstream_errors: prometheus::IntCounter,
    /// `requests{site, action, category}`: [`ACTIONS`] × (the categories
    /// and `none`).
    requests: Box<[std::sync::OnceLock<prometheus::IntCounter>]>,
    /// `rule_matches{site, rule, action}` met so far: at most
    /// [`RULE_HANDLES`] (a policy has a handful of rules; past that, the
    /// label lookup per request as before).
    rule_matches:
        std::sync::Mutex<Vec<(std::sync::Arc<str>, &'static str, prometheus::IntCounter)>>,
}

/// The most rule-match handles a site keeps.
const RULE_HANDLES: usize = 64;

/// Category labels: [`fixative_rules::Category::ALL`], then `none`.
const CATEGORIES: usize = fixative_rules::Category::ALL.len() + 1;

impl SiteMetrics {
    /// The handles of site `site`.
    pub fn new(m: &Metrics, site: &str) -> SiteMetrics {
        SiteMetrics {
            site: site.to_string(),
            duration: m.duration.with_label_values(&[site]),
            upstream_errors: m.upstream_errors.with_label_values(&[site]),
            requests: (0..ACTIONS.len() * CATEGORIES)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            rule_matches: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Counts a request that matched policy rule `rule` with `action`.
    pub fn rule_match(&self, m: &Metrics, rule: &std::sync::Arc<str>, action: &'static str) {
        let Ok(mut handles) = self.rule_matches.lock() else {
            return m
                .rule_matches
                .with_label_values(&[self.site.as_str(), rule, action])
                .inc();
        };
        if let Some((_, _, c)) = handles
            .iter()
            .find(|(r, a, _)| *a == action && (std::sync::Arc::ptr_eq(r, rule) || **r == **rule))
        {
            return c.inc();
        }
        let c = m
            .rule_matches
            .with_label_values(&[self.site.as_str(), rule, action]);
        c.inc();
        if handles.len() < RULE_HANDLES {
            handles.push((rule.clone(), action, c));
        }
    }

    /// Counts one finished request.
    pub fn request(
        &self,
        m: &Metrics,
        verdict: &fixative_rules::Verdict,
        elapsed: f64,
        upstream_failed: bool,
    ) {
        let action = verdict.action.as_str();
        let category = verdict.category_label();
        let a = ACTIONS.iter().position(|x| *x == action);
        let c = match verdict.category {
            None => Some(CATEGORIES - 1),
            Some(cat) => fixative_rules::Category::ALL.iter().position(|x| *x == cat),
        };
        match a
            .zip(c)
            .and_then(|(a, c)| self.requests.get(a * CATEGORIES + c))
        {
            Some(cell) => cell
                .get_or_init(|| {
                    m.requests
                        .with_label_values(&[&self.site, action, category])
                })
                .inc(),
            // An action or category added without its label here.
            None => m
                .requests
                .with_label_values(&[&self.site, action, category])
                .inc(),
        }
        self.duration.observe(elapsed);
        if upstream_failed {
            self.upstream_errors.inc();
        }
    }
}

/// All of Fixative's metrics.
pub struct Metrics {
    registry: Registry,
    /// `fixative_requests_total{site,action,category}`.
    pub requests: IntCounterVec,
    /// `fixative_request_duration_seconds{site}`.
    pub duration: HistogramVec,
    /// `fixative_upstream_errors_total{site}`.
    pub upstream_errors: IntCounterVec,
    /// `fixative_config_reloads_total{result}`.
    pub reloads: IntCounterVec,
    /// `fixative_build_info{version}`, always 1.
    pub build_info: IntGaugeVec,
    /// `fixative_c2pa_sign_seconds`: time to sign one image (XMP + C2PA
    /// manifest) on a worker.
    pub c2pa_sign_seconds: prometheus::Histogram,
    /// `fixative_web_bot_auth_fetches_total{outcome}`: key directories
    /// fetched (ok, error).
    pub bot_auth_fetches: IntCounterVec,
    /// `fixative_rule_matches_total{site,rule,action}`.
    pub rule_matches: IntCounterVec,
    /// `fixative_limiter_keys{policy,rule}`: live rate-limiter keys.
    pub limiter_keys: IntGaugeVec,
    /// `fixative_tracked_clients`: clients in the behaviour tracker.
    pub tracked_clients: prometheus::IntGauge,
    /// `fixative_protector_cache_total{result}` (hit, miss).
    pub protector_cache: IntCounterVec,
    /// `fixative_protector_transform_seconds`.
    pub protector_transform_seconds: prometheus::Histogram,
    /// `fixative_protector_fallbacks_total{reason}`.
    pub protector_fallbacks: IntCounterVec,
    /// `fixative_protector_queue_depth`.
    pub protector_queue_depth: prometheus::IntGauge,
    /// `fixative_limiter_overflow{result}` (aggregated, failed_open):
    /// requests decided while a limiter table was full, since the last reload.
    pub limiter_overflow: IntGaugeVec,
    /// `fixative_connections_open`: client connections being served.
    pub connections_open: prometheus::IntGauge,
    /// `fixative_connections_refused_total{reason}` (global_cap, client_cap).
    pub connections_refused: IntCounterVec,
    /// `fixative_connections_closed_total{reason}` (header_timeout,
    /// idle_timeout, header_too_large): connections Fixative closed itself.
    pub connections_closed: IntCounterVec,
    /// `fixative_checks_total{result}`: browser checks (issued, passed,
    /// automation, failed, replayed, nojs, spent_evicted).
    pub checks: IntCounterVec,
    /// `fixative_check_solve_seconds`: proof-of-work time the page scripts
    /// report (client-reported; for sizing the difficulty).
    pub check_solve_seconds: prometheus::Histogram,
    /// `fixative_interstitials_total`: challenge pages served.
    pub interstitials: prometheus::IntCounter,
    /// `fixative_tarpit_active`: responses in the tarpit now.
    pub tarpit_active: prometheus::IntGauge,
    /// `fixative_tarpit_seconds_total`: time spent in the tarpit (the
    /// scrapers' time wasted).
    pub tarpit_seconds: prometheus::Counter,
    /// `fixative_tarpit_bytes_total`.
    pub tarpit_bytes: prometheus::IntCounter,
    /// `fixative_tarpit_refused_total`: tarpit verdicts answered with the
    /// rule's status because the tarpit was full.
    pub tarpit_refused: prometheus::IntCounter,
    /// `fixative_state_backend_up`: 1 while the shared state store answers
    /// (always 1 with the memory backend).
    pub state_up: prometheus::IntGauge,
    /// `fixative_state_backend_errors_total{op}` (quota, quota_timeout,
    /// sync, snapshot, claim, claim_timeout).
    pub state_errors: IntCounterVec,
    /// `fixative_state_quota_seconds`: round trip of a shared quota check.
    pub state_quota_seconds: prometheus::Histogram,
    /// `fixative_state_decisions_total{by}` (fleet, local): who decided a
    /// request a `limit` rule applied to.
    pub state_decisions: IntCounterVec,
    /// `fixative_state_events_total{direction}` (sent, received).
    pub state_events: IntCounterVec,
    /// `fixative_state_dropped`: events and counts that did not fit the
    /// outbox (since start).
    pub state_dropped: prometheus::IntGauge,
    /// `fixative_ip_ranges_age_seconds{file}`: age of each loaded crawler
    /// IP-range list (since its `creationTime`, else its file's time).
    pub ip_ranges_age: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "fixative_requests_total",
                "Requests handled, by site, verdict action and crawler category.",
            ),
            &["site", "action", "category"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fixative_request_duration_seconds",
                "Time from request start to the end of the response, by site.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["site"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "fixative_upstream_errors_total",
                "Requests that failed because of the upstream (502/504), by site.",
            ),
            &["site"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "fixative_config_reloads_total",
                "Configuration reloads, by result (success, error).",
            ),
            &["result"],
        )?;
        let c2pa_sign_seconds = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "fixative_c2pa_sign_seconds",
                "Time to sign one image with a C2PA manifest (XMP included) on a worker.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        let bot_auth_fetches = IntCounterVec::new(
            Opts::new(
                "fixative_web_bot_auth_fetches_total",
                "Web Bot Auth key directories fetched, by outcome (ok, error).",
            ),
            &["outcome"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("fixative_build_info", "Build information; always 1."),
            &["version"],
        )?;
        let rule_matches = IntCounterVec::new(
            Opts::new(
                "fixative_rule_matches_total",
                "Requests decided by a policy rule, by site, rule and action.",
            ),
            &["site", "rule", "action"],
        )?;
        let limiter_keys = IntGaugeVec::new(
            Opts::new(
                "fixative_limiter_keys",
                "Live keys per rate limiter (bounded by detection.max_limiter_keys).",
            ),
            &["policy", "rule"],
        )?;
        let tracked_clients = prometheus::IntGauge::new(
            "fixative_tracked_clients",
            "Clients in the behaviour tracker (bounded by detection.max_tracked_clients).",
        )?;
        let protector_cache = IntCounterVec::new(
            Opts::new(
                "fixative_protector_cache_total",
                "Variant cache lookups, by result (hit, miss).",
            ),
            &["result"],
        )?;
        let protector_transform_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "fixative_protector_transform_seconds",
                "Time to decode, transform and encode one protected variant.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let protector_fallbacks = IntCounterVec::new(
            Opts::new(
                "fixative_protector_fallbacks_total",
                "Cloak requests answered by the fallback, by reason.",
            ),
            &["reason"],
        )?;
        let protector_queue_depth = prometheus::IntGauge::new(
            "fixative_protector_queue_depth",
            "Transforms running or waiting for a worker.",
        )?;
        let limiter_overflow = IntGaugeVec::new(
            Opts::new(
                "fixative_limiter_overflow",
                "Requests decided while a rate-limiter table was full, since the last reload, by result (aggregated: counted in the wider network's bucket; failed_open: allowed).",
            ),
            &["result"],
        )?;
        let connections_open = prometheus::IntGauge::new(
            "fixative_connections_open",
            "Client connections being served (bounded by server.limits.max_connections).",
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "fixative_connections_refused_total",
                "Client connections refused at accept, by reason (global_cap, client_cap).",
            ),
            &["reason"],
        )?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "fixative_connections_closed_total",
                "Client connections closed by Fixative's own limits, by reason (header_timeout, idle_timeout, header_too_large).",
            ),
            &["reason"],
        )?;
        let checks = IntCounterVec::new(
            Opts::new(
                "fixative_checks_total",
                "Browser checks, by result (issued, passed, automation, failed, replayed, nojs, spent_evicted).",
            ),
            &["result"],
        )?;
        for r in [
            "issued",
            "passed",
            "automation",
            "failed",
            "replayed",
            "nojs",
            "spent_evicted",
        ] {
            checks.with_label_values(&[r]);
        }
        let check_solve_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "fixative_check_solve_seconds",
                "Proof-of-work time reported by the check script (client-reported).",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        registry.register(Box::new(check_solve_seconds.clone()))?;
        let interstitials = prometheus::IntCounter::new(
            "fixative_interstitials_total",
            "Challenge interstitial pages served.",
        )?;
        let tarpit_active = prometheus::IntGauge::new(
            "fixative_tarpit_active",
            "Responses being drip-fed by the tarpit (bounded by tarpit.max_connections).",
        )?;
        let tarpit_seconds = prometheus::Counter::new(
            "fixative_tarpit_seconds_total",
            "Seconds tarpitted clients spent waiting.",
        )?;
        let tarpit_bytes =
            prometheus::IntCounter::new("fixative_tarpit_bytes_total", "Bytes the tarpit sent.")?;
        let tarpit_refused = prometheus::IntCounter::new(
            "fixative_tarpit_refused_total",
            "Tarpit verdicts refused with the rule's status because the tarpit was full.",
        )?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(interstitials.clone()))?;
        registry.register(Box::new(tarpit_active.clone()))?;
        registry.register(Box::new(tarpit_seconds.clone()))?;
        registry.register(Box::new(tarpit_bytes.clone()))?;
        registry.register(Box::new(tarpit_refused.clone()))?;
        let state_up = prometheus::IntGauge::new(
            "fixative_state_backend_up",
            "1 while the state backend answers (the memory backend always does).",
        )?;
        let state_errors = IntCounterVec::new(
            Opts::new(
                "fixative_state_backend_errors_total",
                "Failed or timed-out calls to the shared state backend.",
            ),
            &["op"],
        )?;
        for op in [
            "quota",
            "quota_timeout",
            "sync",
            "snapshot",
            "claim",
            "claim_timeout",
        ] {
            state_errors.with_label_values(&[op]);
        }
        let state_quota_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "fixative_state_quota_seconds",
                "Round trip of a shared quota decision.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05,
            ]),
        )?;
        let state_decisions = IntCounterVec::new(
            Opts::new(
                "fixative_state_decisions_total",
                "Requests under a limit rule decided by the fleet's quota or by this node alone.",
            ),
            &["by"],
        )?;
        let state_events = IntCounterVec::new(
            Opts::new(
                "fixative_state_events_total",
                "Fleet events (penalties, bans, revocations) sent and received.",
            ),
            &["direction"],
        )?;
        let state_dropped = prometheus::IntGauge::new(
            "fixative_state_dropped",
            "Fleet events and counts dropped because the outbox was full.",
        )?;
        for r in ["fleet", "local"] {
            state_decisions.with_label_values(&[r]);
        }
        let ip_ranges_age = IntGaugeVec::new(
            Opts::new(
                "fixative_ip_ranges_age_seconds",
                "Age of each loaded crawler IP-range list, from its creationTime (else the file's modification time); alert when one gets old.",
            ),
            &["file"],
        )?;
        registry.register(Box::new(ip_ranges_age.clone()))?;
        for r in ["sent", "received"] {
            state_events.with_label_values(&[r]);
        }
        registry.register(Box::new(state_up.clone()))?;
        registry.register(Box::new(state_errors.clone()))?;
        registry.register(Box::new(state_quota_seconds.clone()))?;
        registry.register(Box::new(state_decisions.clone()))?;
        registry.register(Box::new(state_events.clone()))?;
        registry.register(Box::new(state_dropped.clone()))?;
        for r in ["aggregated", "failed_open"] {
            limiter_overflow.with_label_values(&[r]);
        }
        for r in ["global_cap", "client_cap"] {
            connections_refused.with_label_values(&[r]);
        }
        for r in ["header_timeout", "idle_timeout", "header_too_large"] {
            connections_closed.with_label_values(&[r]);
        }
        registry.register(Box::new(limiter_overflow.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_closed.clone()))?;
        registry.register(Box::new(protector_cache.clone()))?;
        registry.register(Box::new(protector_transform_seconds.clone()))?;
        registry.register(Box::new(protector_fallbacks.clone()))?;
        registry.register(Box::new(protector_queue_depth.clone()))?;
        registry.register(Box::new(rule_matches.clone()))?;
        registry.register(Box::new(limiter_keys.clone()))?;
        registry.register(Box::new(tracked_clients.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(bot_auth_fetches.clone()))?;
        registry.register(Box::new(c2pa_sign_seconds.clone()))?;
        bot_auth_fetches.with_label_values(&["ok"]);
        bot_auth_fetches.with_label_values(&["error"]);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Make both reload results visible from the start.
        reloads.with_label_values(&["success"]);
        reloads.with_label_values(&["error"]);
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            reloads,
            build_info,
            bot_auth_fetches,
            c2pa_sign_seconds,
            rule_matches,
            limiter_keys,
            tracked_clients,
            protector_cache,
            protector_transform_seconds,
            protector_fallbacks,
            protector_queue_depth,
            limiter_overflow,
            connections_open,
            connections_refused,
            connections_closed,
            checks,
            check_solve_seconds,
            interstitials,
            tarpit_active,
            tarpit_seconds,
            tarpit_bytes,
            tarpit_refused,
            state_up,
            state_errors,
            state_quota_seconds,
            state_decisions,
            state_events,
            state_dropped,
            ip_ranges_age,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!("cannot encode metrics: {e}");
        }
        let allocs = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        if allocs > 0 {
            buf.extend_from_slice(
                format!("# TYPE fixative_debug_allocations_total counter\nfixative_debug_allocations_total {allocs}\n")
                    .as_bytes(),
            );
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixative_rules::{Action, Category, Verdict};

    /// Every action and category (and none) has its cached counter, and
    /// each request lands in the series its labels name; the duration
    /// and upstream errors land in the site's series.
    #[test]
    fn rule_match_handles_count_into_the_labelled_series_and_stay_bounded() {
        let m = Metrics::new().unwrap();
        let s = SiteMetrics::new(&m, "gallery");
        let quota: std::sync::Arc<str> = "quota".into();
        let same_name: std::sync::Arc<str> = "quota".into(); // another Arc
        for _ in 0..3 {
            s.rule_match(&m, &quota, "limit");
        }
        s.rule_match(&m, &same_name, "limit");
        s.rule_match(&m, &quota, "limited");
        let get = |rule: &str, action: &str| {
            m.rule_matches
                .with_label_values(&["gallery", rule, action])
                .get()
        };
        assert_eq!(get("quota", "limit"), 4);
        assert_eq!(get("quota", "limited"), 1);
        // Rules past the cap are still counted, without a kept handle.
        for i in 0..RULE_HANDLES + 10 {
            let r: std::sync::Arc<str> = format!("r{i}").into();
            s.rule_match(&m, &r, "block");
            s.rule_match(&m, &r, "block");
        }
        assert_eq!(s.rule_matches.lock().unwrap().len(), RULE_HANDLES);
        assert_eq!(get("r0", "block"), 2);
        assert_eq!(get(&format!("r{}", RULE_HANDLES + 9), "block"), 2);
    }

    #[test]
    fn site_handles_count_into_the_labelled_series() {
        let m = Metrics::new().unwrap();
        let s = SiteMetrics::new(&m, "gallery");
        // A configured site's series exist from the start, at 0.
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("fixative_upstream_errors_total{site=\"gallery\"} 0"));
        assert!(text.contains("fixative_request_duration_seconds_count{site=\"gallery\"} 0"));
        let actions = [
            Action::Allow,
            Action::Observe,
            Action::Limit,
            Action::Limited,
            Action::Cloak,
            Action::Challenge(403),
            Action::Tarpit(429),
            Action::Block(451),
        ];
        let categories: Vec<Option<Category>> = std::iter::once(None)
            .chain(Category::ALL.iter().copied().map(Some))
            .collect();
        for (i, a) in actions.iter().enumerate() {
            assert!(ACTIONS.contains(&a.as_str()));
            for c in &categories {
                let mut v = Verdict::allow();
                v.action = *a;
                v.category = *c;
                for _ in 0..=i {
                    s.request(&m, &v, 0.01, false);
                }
                let n = m
                    .requests
                    .with_label_values(&["gallery", a.as_str(), v.category_label()])
                    .get();
                assert_eq!(n, i as u64 + 1, "{} {}", a.as_str(), v.category_label());
            }
        }
        assert!(s.requests.iter().all(|c| c.get().is_some()));
        s.request(&m, &Verdict::allow(), 0.5, true);
        let total = (actions.len() * (actions.len() + 1) / 2) * categories.len() + 1;
        assert_eq!(
            m.duration
                .with_label_values(&["gallery"])
                .get_sample_count(),
            total as u64
        );
        assert_eq!(m.upstream_errors.with_label_values(&["gallery"]).get(), 1);
    }
}
