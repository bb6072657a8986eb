//! The live dashboard on the admin listener: a page (`/`, `/dashboard`)
//! with its script and style, and the JSON API it polls
//! (`GET /api/v1/dashboard`, documented in the README).
//!
//! Built from nothing but the page's own ~150 lines of script: the chart
//! is SVG drawn in the browser from the API's numbers, so there is no
//! third-party code to vet or update, nothing fetched from a CDN, and the
//! page works offline on an isolated admin network. The page's
//! Content-Security-Policy allows only its own script, style and API.

use std::sync::atomic::Ordering;

use crate::state::Shared;

/// The page.
pub const HTML: &str = include_str!("../assets/dashboard.html");
/// Its script.
pub const JS: &str = include_str!("../assets/dashboard.js");
/// Its style.
pub const CSS: &str = include_str!("../assets/dashboard.css");
/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `?step=10&top=10&window=3600`: bucket width in seconds (1 to 3600),
/// table rows, and the seconds the series covers (up to the hour).
fn params(query: &str) -> (u64, usize, u64) {
    let mut step = 10;
    let mut top = 10;
    let mut window = crate::activity::HISTORY;
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match k {
            "step" => step = v.parse().unwrap_or(step),
            "top" => top = v.parse().unwrap_or(top),
            "window" => window = v.parse().unwrap_or(window),
            _ => {}
        }
    }
    (
        step.clamp(1, crate::activity::HISTORY),
        top.clamp(1, 100),
        window,
    )
}

/// The API's answer.
pub fn api(shared: &Shared, query: &str) -> serde_json::Value {
    let (step, top, window) = params(query);
    let now = crate::challenge::unix_now();
    let mut v = shared.activity.snapshot_window(now, step, top, window);
    let rt = shared.runtime.load_full();
    let m = &shared.metrics;
    let p = &rt.config.protector;
    let fallbacks: u64 = crate::cloak::FallbackReason::ALL
        .iter()
        .map(|r| m.protector_fallbacks.with_label_values(&[r.as_str()]).get())
        .sum();
    let sizes = rt.engine.state_sizes();
    let reload = shared
        .last_reload
        .lock()
        .ok()
        .and_then(|l| l.clone())
        .map(|(at, ok, message)| serde_json::json!({"at": at, "ok": ok, "message": message}));
    let link = &shared.fleet;
    let ev = shared.evidence.as_ref().map(|l| l.stats().clone());
    let evidence = match ev {
        Some(s) => serde_json::json!({
            "enabled": true,
            "records": s.records.load(Ordering::Relaxed),
            "dropped": s.dropped.load(Ordering::Relaxed),
            "seals": s.seals.load(Ordering::Relaxed),
            "write_errors": s.write_errors.load(Ordering::Relaxed),
            "bytes": s.bytes.load(Ordering::Relaxed),
        }),
        None => serde_json::json!({"enabled": false}),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "protector".into(),
            serde_json::json!({
                "cache_bytes": rt.cloaker.cache_bytes(),
                "cache_capacity_bytes": p.cache_bytes,
                "workers": p.workers,
                "queue": p.queue,
                "queue_depth": m.protector_queue_depth.get(),
                "fallbacks": fallbacks,
            }),
        );
        o.insert(
            "limiters".into(),
            serde_json::json!({
                "tracked_clients": sizes.tracked_clients,
                "keys": sizes.limiter_keys.iter().map(|(policy, rule, n)| serde_json::json!({
                    "policy": policy, "rule": rule, "keys": n,
                })).collect::<Vec<_>>(),
                "overflow": {
                    "aggregated": sizes.limiter_overflow.aggregated,
                    "failed_open": sizes.limiter_overflow.failed_open,
                },
            }),
        );
        o.insert(
            "config".into(),
            serde_json::json!({
                "generation": shared.generation.load(Ordering::Relaxed),
                "source": rt.config.source_name,
                "sites": rt.config.sites.len(),
                "last_reload": reload,
            }),
        );
        o.insert(
            "state".into(),
            serde_json::json!({
                "backend": if link.shared() { "redis" } else { "memory" },
                "up": link.up(),
                "bans": link.fleet.bans(now).len(),
            }),
        );
        o.insert("evidence".into(), evidence);
        o.insert("tarpit_active".into(), m.tarpit_active.get().into());
        o.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    }
    v
}

/// The ledger's counters in Prometheus text form (appended to `/metrics`).
pub fn evidence_metrics(shared: &Shared, out: &mut Vec<u8>) {
    let Some(l) = &shared.evidence else { return };
    let s = l.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    for (name, kind, help, v) in [
        (
            "fixative_evidence_records_total",
            "counter",
            "Visits written to the evidence ledger.",
            load(&s.records),
        ),
        (
            "fixative_evidence_dropped_total",
            "counter",
            "Visits not recorded because the ledger's queue was full (gap lines note them).",
            load(&s.dropped),
        ),
        (
            "fixative_evidence_seals_total",
            "counter",
            "Signed seals written.",
            load(&s.seals),
        ),
        (
            "fixative_evidence_write_errors_total",
            "counter",
            "Failed ledger writes.",
            load(&s.write_errors),
        ),
        (
            "fixative_evidence_bytes",
            "gauge",
            "Bytes of the ledger's files on disk (bounded by evidence.max_total_bytes).",
            load(&s.bytes),
        ),
    ] {
        out.extend_from_slice(
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n").as_bytes(),
        );
    }
}
