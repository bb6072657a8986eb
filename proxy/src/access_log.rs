//! The access log: one JSON object per request.
//!
//! [`emit`] serializes the line into a per-thread buffer (no allocation
//! once the buffer has grown to a line's size) and appends it to the
//! batching writer ([`crate::logbuf`]) installed by [`install`], which
//! writes to stdout or a file, so a slow disk never stalls request
//! handling. The line does not go through `tracing`: an event per request,
//! dispatched to every layer only for one of them to keep it, cost more
//! than building the line (0.6 of 2.3 µs per request in a profile). Nor
//! through serde: its fields are written in order with serde_json's
//! string escaping and number formatting (the same bytes; tested against
//! serde_json), about half the time serde's per-field calls took.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use fixative_rules::Verdict;

use crate::logbuf::BatchWriter;

/// Where access-log lines go; unset (access log off) until [`install`].
static SINK: OnceLock<BatchWriter> = OnceLock::new();

/// Sends every later [`emit`] to `w`. The first call wins (logging is
/// installed once per process); returns whether this one did.
pub fn install(w: BatchWriter) -> bool {
    SINK.set(w).is_ok()
}

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

/// Writes one access-log line (when an access log is installed).
pub fn emit(e: &Entry<'_>) {
    let Some(sink) = SINK.get() else {
        return;
    };
    LINE_BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            write_line(e, &mut buf);
            sink.append(&buf);
            // A rare huge line (a long path) does not keep its buffer.
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::with_capacity(LINE_CAPACITY);
            }
        }
        // Not reachable (nothing in write_line emits); never panic for it.
        Err(_) => {
            let mut buf = Vec::with_capacity(LINE_CAPACITY);
            write_line(e, &mut buf);
            sink.append(&buf);
        }
    });
}

thread_local! {
    /// Each thread's line buffer, reused from line to line.
    static LINE_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(LINE_CAPACITY));
}

/// A typical line's size, newline included.
const LINE_CAPACITY: usize = 640;
/// Past this, the per-thread buffer is given back after the line.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Appends `e` to `out` as one JSON object and a newline: the fields in
/// a fixed order, absent optional ones (`grace_left`, `preference`,
/// `signed_agent`) left out, others `null`.
fn write_line(e: &Entry<'_>, out: &mut Vec<u8>) {
    let mut stamp = [0u8; STAMP_LEN];
    let v = e.verdict;
    out.extend_from_slice(b"{\"time\":");
    json_str(out, now_rfc3339(&mut stamp));
    field(out, "request_id");
    json_str(out, e.request_id);
    field(out, "client_ip");
    // Digits, dots, hex and colons: nothing to escape.
    let mut ip = crate::value::ValueBuf::new();
    ip.push_ip(e.client_ip);
    out.push(b'"');
    out.extend_from_slice(ip.as_bytes());
    out.push(b'"');
    for (name, value) in [
        ("site", e.site),
        ("host", e.host),
        ("method", e.method),
        ("path", e.path),
    ] {
        field(out, name);
        json_str(out, value);
    }
    field(out, "status");
    json_int(out, e.status);
    field(out, "bytes");
    json_int(out, e.bytes);
    field(out, "duration_ms");
    let ms = (e.duration.as_secs_f64() * 1e6).round() / 1e3;
    if ms.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(ms).as_bytes());
    } else {
        out.extend_from_slice(b"null"); // as serde_json writes it
    }
    field(out, "action");
    json_str(out, v.action.as_str());
    field(out, "score");
    json_int(out, v.score);
    for (name, value) in [
        ("category", v.category.map(|c| c.as_str())),
        ("crawler", v.crawler.as_deref()),
        ("rule", v.rule.as_deref()),
        ("would", v.would.map(|a| a.as_str())),
    ] {
        field(out, name);
        match value {
            Some(s) => json_str(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }
    field(out, "pass");
    json_str(out, v.pass.as_str());
    if let Some(g) = v.grace_left {
        field(out, "grace_left");
        json_int(out, g);
    }
    for (name, value) in [
        ("preference", e.preference),
        ("signed_agent", v.signed_agent.as_deref()),
    ] {
        if let Some(s) = value {
            field(out, name);
            json_str(out, s);
        }
    }
    field(out, "reasons");
    out.push(b'[');
    for (i, r) in v.reasons.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // `signal:detail(+weight)`, as `Verdict::reason_strings`.
        out.push(b'"');
        json_str_body(out, r.signal);
        out.push(b':');
        json_str_body(out, &r.detail);
        out.push(b'(');
        if r.weight >= 0 {
            out.push(b'+');
        }
        json_int(out, r.weight);
        out.extend_from_slice(b")\"");
    }
    out.extend_from_slice(b"]}\n");
}

/// `,"name":` (every field but the first).
fn field(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// An integer, as serde_json writes it.
fn json_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    json_str_body(out, s);
    out.push(b'"');
}

/// The inside of a JSON string, escaped as serde_json escapes it: `"` and
/// `\\`, the short escapes for backspace, tab, newline, form feed and
/// carriage return, `\\u00XX` for the other control characters; the rest
/// (non-ASCII included) as is. Runs of plain bytes are copied at once.
fn json_str_body(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain..i).unwrap_or_default());
        plain = i + 1;
        if short.is_empty() {
            let hex = |n: u8| HEX.get(usize::from(n & 0xf)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b)]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(bytes.get(plain..).unwrap_or_default());
}

/// Room for an RFC 3339 time with nanoseconds and an offset (35 bytes).
const STAMP_LEN: usize = 48;

/// The current UTC time in RFC 3339, written into `buf` (no allocation);
/// empty if it does not fit, which a valid time always does.
fn now_rfc3339(buf: &mut [u8; STAMP_LEN]) -> &str {
    let now = time::OffsetDateTime::now_utc();
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let n = match now.format_into(&mut cursor, &time::format_description::well_known::Rfc3339) {
        // What was written (the returned count is not always all of it).
        Ok(_) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    buf.get(..n)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logbuf::tests::Sink;

    fn entry<'a>(verdict: &'a Verdict, path: &'a str) -> Entry<'a> {
        Entry {
            request_id: "01JD0000000000000000000000",
            client_ip: IpAddr::from([203, 0, 113, 7]),
            site: "portfolio",
            host: "art.example",
            method: "GET",
            path,
            status: 200,
            bytes: 1024,
            duration: Duration::from_micros(1_234),
            verdict,
            preference: None,
        }
    }

    /// One JSON object per line, with hostile bytes in the path escaped
    /// (a quote, a newline, a control character, non-ASCII) and every
    /// field a reader of the log expects.
    #[test]
    fn a_line_is_one_json_object_whatever_the_path_holds() {
        let mut verdict = Verdict::allow();
        verdict.reasons.push(fixative_rules::Reason {
            signal: "ua.catalog",
            weight: 40,
            detail: "GPTBot \"quoted\"".into(),
        });
        let mut out = Vec::new();
        let path = "/a\"b\nc\u{1}d/é";
        write_line(&entry(&verdict, path), &mut out);
        write_line(&entry(&verdict, "/second"), &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
        assert_eq!(v["path"], path);
        assert_eq!(v["client_ip"], "203.0.113.7");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.234);
        assert_eq!(v["action"], "allow");
        assert_eq!(v["reasons"][0], "ua.catalog:GPTBot \"quoted\"(+40)");
        let time = v["time"].as_str().unwrap_or("");
        assert!(
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{time}"
        );
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap_or_default();
        assert_eq!(second["path"], "/second");
    }

    /// The line as serde_json wrote it before it was written by hand:
    /// the reference the hand-written line must equal byte for byte.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        time: &'a str,
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

    fn serde_line(e: &Entry<'_>, time: &str) -> Vec<u8> {
        let v = e.verdict;
        let line = Line {
            time,
            request_id: e.request_id,
            client_ip: e.client_ip,
            site: e.site,
            host: e.host,
            method: e.method,
            path: e.path,
            status: e.status,
            bytes: e.bytes,
            duration_ms: (e.duration.as_secs_f64() * 1e6).round() / 1e3,
            action: v.action.as_str(),
            score: v.score,
            category: v.category.map(|c| c.as_str()),
            crawler: v.crawler.as_deref(),
            rule: v.rule.as_deref(),
            would: v.would.map(|a| a.as_str()),
            pass: v.pass.as_str(),
            grace_left: v.grace_left,
            preference: e.preference,
            signed_agent: v.signed_agent.as_deref(),
            reasons: v.reason_strings(),
        };
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The time field's value in a line (the rest is compared whole).
    fn time_of(line: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        v["time"].as_str().unwrap_or("").to_string()
    }

    mod same_as_serde {
        use super::*;
        use fixative_rules::pass::PassState;
        use fixative_rules::{Action, Category, Reason};
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9./_-]{0,24}",
                ".{0,40}",
                prop::collection::vec(any::<char>(), 0..16).prop_map(|c| c.into_iter().collect()),
                prop::collection::vec(0u8..0x80, 0..16)
                    .prop_map(|b| b.into_iter().map(char::from).collect()),
            ]
        }

        fn ip() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u16; 8]>().prop_map(IpAddr::from),
            ]
        }

        proptest! {
            /// Any entry: hostile text in every string field, any
            /// address, any numbers, every optional field present or not.
            #[test]
            fn any_line_is_what_serde_json_wrote(
                (request_id, site, host, method, path) in (text(), text(), text(), text(), text()),
                client_ip in ip(),
                (status, bytes, micros) in (any::<u16>(), any::<u64>(), any::<u64>()),
                score in any::<i32>(),
                action in prop::sample::select(vec![Action::Allow, Action::Observe, Action::Limit, Action::Limited, Action::Cloak]),
                would in prop::option::of(prop::sample::select(vec![Action::Observe, Action::Limited])),
                category in prop::option::of(prop::sample::select(vec![Category::AiTraining, Category::HttpLibrary, Category::HeadlessBrowser])),
                (crawler, rule, signed, preference) in (
                    prop::option::of(text()), prop::option::of(text()),
                    prop::option::of(text()), prop::option::of(text()),
                ),
                pass in prop::sample::select(vec![PassState::None, PassState::Valid, PassState::NoJs, PassState::Automation]),
                grace_left in prop::option::of(any::<u32>()),
                reasons in prop::collection::vec(
                    (prop::sample::select(vec!["ua.catalog", "header.no-accept", "odd\"\\signal"]), any::<i32>(), text()),
                    0..4,
                ),
            ) {
                let mut v = Verdict::allow();
                v.action = action;
                v.score = score;
                v.would = would;
                v.category = category;
                v.crawler = crawler.map(Into::into);
                v.rule = rule.map(Into::into);
                v.signed_agent = signed.map(Into::into);
                v.pass = pass;
                v.grace_left = grace_left;
                v.reasons = reasons
                    .into_iter()
                    .map(|(signal, weight, detail)| Reason { signal, weight, detail })
                    .collect();
                let e = Entry {
                    request_id: &request_id,
                    client_ip,
                    site: &site,
                    host: &host,
                    method: &method,
                    path: &path,
                    status,
                    bytes,
                    duration: Duration::from_micros(micros),
                    verdict: &v,
                    preference: preference.as_deref(),
                };
                let mut ours = Vec::new();
                write_line(&e, &mut ours);
                let theirs = serde_line(&e, &time_of(&ours));
                prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
            }
        }
    }

    /// Through the installed writer: lines from several threads arrive
    /// whole, one per emit, and a huge line does not stay in its thread's
    /// buffer.
    #[test]
    fn emitted_lines_reach_the_installed_writer_whole() {
        let sink = Sink::default();
        let (w, guard) = BatchWriter::new(Box::new(sink.clone()));
        assert!(install(w));
        let verdict = Verdict::allow();
        let long = format!("/{}", "x".repeat(100_000));
        std::thread::scope(|s| {
            for t in 0..4 {
                let (verdict, long) = (&verdict, &long);
                s.spawn(move || {
                    for i in 0..250 {
                        let path = if i == 100 {
                            long.clone()
                        } else {
                            format!("/t{t}/{i}")
                        };
                        emit(&entry(verdict, &path));
                        let kept = LINE_BUF.with(|b| b.borrow().capacity());
                        assert!(kept <= KEEP_CAPACITY, "{kept}");
                    }
                });
            }
        });
        drop(guard);
        let bytes = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_default();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 1000);
        assert!(
            lines
                .iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        assert_eq!(lines.iter().filter(|l| l.len() > 100_000).count(), 4);
    }
}
