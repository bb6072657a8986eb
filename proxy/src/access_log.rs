//! The access log: one JSON object per request.
//!
//! Each request emits a `tracing` event with target `fixative::access`
//! whose `entry` field holds the serialized JSON object. [`AccessLayer`]
//! writes those lines, unchanged, to stdout or a file through a batching
//! writer ([`crate::logbuf`]), so a slow disk never stalls request handling.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use fixative_rules::Verdict;
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The tracing target of access-log events.
pub const TARGET: &str = "fixative::access";

/// What one access-log line records.
pub struct Entry<'a> {
    /// Request id (also sent as `X-Request-Id`).
    pub request_id: &'a str,
    /// Client address after trusted-proxy resolution.
    pub client_ip: IpAddr,
    /// Site name, or `unknown`.
    pub site: &'a str,
    /// Host as routed.
    pub host: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Response status, 0 when none was sent.
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// Time from request start to the end of the response.
    pub duration: Duration,
    /// The engine's verdict.
    pub verdict: &'a Verdict,
    /// The usage preference that applied (`default` or a
    /// `[[site.preference]]` name), on sites that have preferences.
    pub preference: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    client_ip: IpAddr,
    site: &'a str,
    host: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    action: &'static str,
    score: i32,
    category: Option<&'static str>,
    crawler: Option<&'a str>,
    rule: Option<&'a str>,
    would: Option<&'static str>,
    pass: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_agent: Option<&'a str>,
    reasons: Vec<String>,
}

/// Emits one access-log event.
pub fn emit(e: &Entry<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let line = Line {
        time: now_rfc3339(),
        request_id: e.request_id,
        client_ip: e.client_ip,
        site: e.site,
        host: e.host,
        method: e.method,
        path: e.path,
        status: e.status,
        bytes: e.bytes,
        duration_ms: (e.duration.as_secs_f64() * 1e6).round() / 1e3,
        action: e.verdict.action.as_str(),
        score: e.verdict.score,
        category: e.verdict.category.map(|c| c.as_str()),
        crawler: e.verdict.crawler.as_deref(),
        rule: e.verdict.rule.as_deref(),
        would: e.verdict.would.map(|a| a.as_str()),
        pass: e.verdict.pass.as_str(),
        grace_left: e.verdict.grace_left,
        preference: e.preference,
        signed_agent: e.verdict.signed_agent.as_deref(),
        reasons: e.verdict.reason_strings(),
    };
    // One buffer, sized for a typical line, newline included: the layer
    // hands it to the batching writer as it is.
    let mut json = Vec::with_capacity(640);
    match serde_json::to_writer(&mut json, &line) {
        Ok(()) => {
            json.push(b'\n');
            if let Ok(text) = std::str::from_utf8(&json) {
                tracing::info!(target: TARGET, entry = text);
            }
        }
        Err(err) => tracing::warn!("cannot serialize an access-log line: {err}"),
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A layer that writes access-log events' `entry` field as raw lines.
pub struct AccessLayer<W> {
    make_writer: W,
}

impl<W> AccessLayer<W> {
    /// Writes through `make_writer` (the batching [`crate::logbuf::BatchWriter`]).
    pub fn new(make_writer: W) -> Self {
        AccessLayer { make_writer }
    }
}

/// Writes the `entry` field straight to the writer (no copy).
struct EntryVisitor<'w, W: Write>(&'w mut W);

impl<W: Write> Visit for EntryVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "entry" {
            // One write per line (it ends with its newline): the batching
            // writer appends it whole.
            let _ = self.0.write_all(value.as_bytes());
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S, W> Layer<S> for AccessLayer<W>
where
    S: Subscriber,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut w = self.make_writer.make_writer();
        event.record(&mut EntryVisitor(&mut w));
    }
}
