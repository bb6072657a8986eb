//! Reading a ledger: checking its chain and seals, and exporting visits.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::record::{Body, Line, Visit};

/// The first line that does not hold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Broken {
    /// The record's number (the position it should have in the chain).
    pub n: u64,
    /// The file.
    pub file: String,
    /// The line in that file, from 1.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Lines read, up to the first broken one.
    pub records: u64,
    /// The first record present (above 0 when retention removed older
    /// files, as the chain records).
    pub first_n: u64,
    /// The last good record.
    pub last_n: Option<u64>,
    /// Seals checked.
    pub seals: u64,
    /// Every line before this number is signed.
    pub sealed_below: u64,
    /// Good lines after the last seal (chained, not yet signed).
    pub unsealed: u64,
    /// Keys that signed seals (base64).
    pub keys: Vec<String>,
    /// Visits.
    pub visits: u64,
    /// Visits dropped when the writer's queue was full, as `gap` lines say.
    pub dropped: u64,
    /// Writer (re)starts.
    pub starts: u64,
    /// The first broken line, if any.
    pub broken: Option<Broken>,
    /// A last line still being written (not an error).
    pub unfinished_tail: bool,
}

impl Report {
    /// Whether the whole ledger holds.
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.broken {
            Some(b) => writeln!(
                f,
                "BROKEN at record {} ({} line {}): {}",
                b.n, b.file, b.line, b.why
            )?,
            None => writeln!(f, "OK: the chain and every seal hold")?,
        }
        writeln!(
            f,
            "{} files, records {}..={} ({} visits, {} seals, {} starts)",
            self.files,
            self.first_n,
            self.last_n
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            self.visits,
            self.seals,
            self.starts
        )?;
        if self.first_n > 0 {
            writeln!(
                f,
                "records before {} were removed by retention (recorded in the chain)",
                self.first_n
            )?;
        }
        if self.dropped > 0 {
            writeln!(
                f,
                "{} visits were not recorded (writer queue full; gap lines note where)",
                self.dropped
            )?;
        }
        if self.unsealed > 0 {
            writeln!(
                f,
                "{} records after the last seal are chained but not yet signed",
                self.unsealed
            )?;
        }
        for k in &self.keys {
            writeln!(f, "signed by Ed25519 key {k}")?;
        }
        Ok(())
    }
}

/// One raw line with where it is.
struct Raw<'a> {
    file: &'a str,
    line: usize,
    bytes: &'a [u8],
    last_in_ledger: bool,
    finished: bool,
}

/// Calls `f` for every line of the ledger, in order; stops when it
/// returns `false`.
fn each_line(dir: &Path, mut f: impl FnMut(Raw<'_>) -> bool) -> Result<usize, String> {
    let files = crate::ledger_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let count = files.len();
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            line += 1;
            let finished = buf.last() == Some(&b'\n');
            let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let last_in_ledger =
                i + 1 == count && reader.fill_buf().map(|b| b.is_empty()).unwrap_or(true);
            if !f(Raw {
                file: &name,
                line,
                bytes,
                last_in_ledger,
                finished,
            }) {
                return Ok(count);
            }
        }
    }
    Ok(count)
}

/// Checks the ledger in `dir`: every line's number and hash link, every
/// seal's signature (by `pinned` when given, else by the key of the first
/// seal), and names the first line that does not hold.
pub fn verify(dir: &Path, pinned: Option<&VerifyingKey>) -> Result<Report, String> {
    // Retention lines say where the chain may legitimately start.
    let mut retained: Vec<(u64, String)> = Vec::new();
    each_line(dir, |raw| {
        if let Ok(Line {
            body: Body::Retention {
                last_n, last_hash, ..
            },
            ..
        }) = serde_json::from_slice::<Line>(raw.bytes)
        {
            retained.push((last_n, last_hash));
        }
        true
    })?;
    let mut report = Report::default();
    let mut expected: Option<u64> = None;
    let mut prev_hash = String::new();
    let mut key: Option<VerifyingKey> = pinned.copied();
    let files = each_line(dir, |raw| {
        let at = expected.unwrap_or(0);
        let broken = |why: String| Broken {
            n: at,
            file: raw.file.to_string(),
            line: raw.line,
            why,
        };
        if !raw.finished {
            if raw.last_in_ledger {
                report.unfinished_tail = true;
            } else {
                report.broken = Some(broken("an unfinished line inside the ledger".into()));
            }
            return false;
        }
        let rec: Line = match serde_json::from_slice(raw.bytes) {
            Ok(r) => r,
            Err(e) => {
                report.broken = Some(broken(format!("not a ledger record ({e}): it was altered")));
                return false;
            }
        };
        match expected {
            None => {
                let anchored = (rec.n == 0 && rec.prev == crate::GENESIS)
                    || retained
                        .iter()
                        .any(|(n, h)| n.checked_add(1) == Some(rec.n) && *h == rec.prev);
                if !anchored {
                    report.broken = Some(Broken {
                        n: rec.n,
                        ..broken(if rec.n == 0 {
                            "record 0 does not start from the genesis hash".into()
                        } else {
                            format!(
                                "records before {} are missing and no retention line in the chain accounts for them",
                                rec.n
                            )
                        })
                    });
                    return false;
                }
                report.first_n = rec.n;
            }
            Some(want) => {
                if rec.n > want {
                    report.broken = Some(broken(format!(
                        "record {want} is missing (found record {} after record {})",
                        rec.n,
                        want.saturating_sub(1)
                    )));
                    return false;
                }
                if rec.n < want {
                    report.broken = Some(broken(format!(
                        "record {} is out of order (record {want} expected here)",
                        rec.n
                    )));
                    return false;
                }
                if rec.prev != prev_hash {
                    report.broken = Some(Broken {
                        n: want.saturating_sub(1),
                        ..broken(format!(
                            "record {} was altered: its hash does not match the one record {want} holds",
                            want.saturating_sub(1)
                        ))
                    });
                    if let Some(b) = report.broken.as_mut() {
                        b.line = raw.line.saturating_sub(1).max(1);
                    }
                    return false;
                }
            }
        }
        match &rec.body {
            Body::Seal { key: k, sig } => {
                match crate::check_seal(rec.n, &rec.prev, &rec.time, k, sig) {
                    Ok(signer) => {
                        if let Some(want) = key
                            && want != signer
                        {
                            report.broken = Some(broken(format!(
                                "sealed by key {k}, not by the ledger's key {}",
                                crate::public_key_base64(&want)
                            )));
                            return false;
                        }
                        key = Some(signer);
                        if !report.keys.contains(k) {
                            report.keys.push(k.clone());
                        }
                        report.seals += 1;
                        report.sealed_below = rec.n;
                        report.unsealed = 0;
                    }
                    Err(why) => {
                        report.broken = Some(broken(format!("the seal does not verify: {why}")));
                        return false;
                    }
                }
            }
            Body::Visit(_) => {
                report.visits += 1;
                report.unsealed += 1;
            }
            Body::Gap { dropped } => {
                report.dropped += dropped;
                report.unsealed += 1;
            }
            Body::Start { .. } => {
                report.starts += 1;
                report.unsealed += 1;
            }
            Body::Retention { .. } => report.unsealed += 1,
        }
        report.records += 1;
        report.last_n = Some(rec.n);
        prev_hash = crate::line_hash(raw.bytes);
        expected = rec.n.checked_add(1);
        true
    })?;
    report.files = files;
    Ok(report)
}

/// Which visits an export keeps.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Crawler name (case-insensitive); `unknown` for unnamed scrapers.
    pub crawler: Option<String>,
    /// Site name.
    pub site: Option<String>,
    /// From this time on.
    pub since: Option<time::OffsetDateTime>,
    /// Before this time.
    pub until: Option<time::OffsetDateTime>,
    /// The visit that was served this watermark payload (16 hex digits, as
    /// `fixative protector detect` prints it).
    pub watermark: Option<String>,
}

impl ExportFilter {
    fn keeps(&self, time: &str, v: &Visit) -> bool {
        if let Some(c) = &self.crawler {
            let name = v.crawler.as_deref().unwrap_or("unknown");
            if !name.eq_ignore_ascii_case(c) {
                return false;
            }
        }
        if self.site.as_ref().is_some_and(|s| *s != v.site) {
            return false;
        }
        if let Some(w) = &self.watermark {
            let w = w.trim().trim_start_matches("0x");
            if !v
                .watermark
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(w))
            {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = crate::parse_time(time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// One row per visit.
    Csv,
    /// `{"ledger": report, "filter": …, "visits": [...]}`.
    Json,
}

const CSV_HEADER: [&str; 24] = [
    "n",
    "hash",
    "time",
    "site",
    "host",
    "method",
    "path",
    "status",
    "user_agent",
    "client_ip",
    "network",
    "asn",
    "as_org",
    "crawler",
    "category",
    "action",
    "rule",
    "robots_txt_disallowed",
    "robots_txt_fetched_at",
    "x_robots_tag",
    "tdm_reservation",
    "content_usage",
    "xmp",
    "watermark",
];

fn header_values(v: &Visit, name: &str) -> String {
    v.reservation
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Verifies the ledger, then writes the visits `filter` keeps to `out`.
/// Refuses a broken ledger unless `unverified` (the report then says it).
/// Returns the report and the number of visits written.
pub fn export(
    dir: &Path,
    filter: &ExportFilter,
    format: Export,
    pinned: Option<&VerifyingKey>,
    unverified: bool,
    out: &mut dyn Write,
) -> Result<(Report, u64), String> {
    let report = verify(dir, pinned)?;
    if !report.ok() && !unverified {
        return Err(format!(
            "the ledger does not verify, nothing exported (pass --unverified to export anyway):\n{report}"
        ));
    }
    // Times of visits: the line's, kept beside each visit.
    let mut rows: u64 = 0;
    let mut error: Option<String> = None;
    match format {
        Export::Csv => {
            let mut w = csv::Writer::from_writer(out);
            if let Err(e) = w.write_record(CSV_HEADER) {
                return Err(e.to_string());
            }
            each_visit(dir, &report, unverified, |n, hash, time, v| {
                if !filter.keeps(time, v) || error.is_some() {
                    return;
                }
                let robots = v.reservation.robots_txt.as_ref();
                let row = [
                    n.to_string(),
                    hash.to_string(),
                    time.to_string(),
                    v.site.clone(),
                    v.host.clone(),
                    v.method.clone(),
                    v.path.clone(),
                    v.status.to_string(),
                    v.user_agent.clone(),
                    v.client_ip.clone(),
                    v.network.clone(),
                    v.asn.map(|a| a.to_string()).unwrap_or_default(),
                    v.as_org.clone().unwrap_or_default(),
                    v.crawler.clone().unwrap_or_default(),
                    v.category.clone().unwrap_or_default(),
                    v.action.clone(),
                    v.rule.clone().unwrap_or_default(),
                    robots.map(|r| r.disallowed.to_string()).unwrap_or_default(),
                    robots
                        .and_then(|r| r.fetched_at.clone())
                        .unwrap_or_default(),
                    header_values(v, "x-robots-tag"),
                    header_values(v, "tdm-reservation"),
                    header_values(v, "content-usage"),
                    v.reservation.xmp.clone().unwrap_or_default(),
                    v.watermark.clone().unwrap_or_default(),
                ];
                match w.write_record(&row) {
                    Ok(()) => rows += 1,
                    Err(e) => error = Some(e.to_string()),
                }
            })?;
            w.flush().map_err(|e| e.to_string())?;
        }
        Export::Json => {
            #[derive(Serialize)]
            struct Row<'a> {
                n: u64,
                hash: &'a str,
                time: &'a str,
                #[serde(flatten)]
                visit: &'a Visit,
            }
            let head = serde_json::json!({
                "ledger": &report,
                "verified": report.ok(),
                "filter": {
                    "crawler": filter.crawler,
                    "site": filter.site,
                    "since": filter.since.map(crate::rfc3339),
                    "until": filter.until.map(crate::rfc3339),
                    "watermark": filter.watermark,
                },
            });
            let head = serde_json::to_string_pretty(&head).map_err(|e| e.to_string())?;
            // The head without its closing brace, then the visits array.
            let open = head.trim_end().strip_suffix('}').unwrap_or(&head);
            write!(out, "{open},\n  \"visits\": [").map_err(|e| e.to_string())?;
            each_visit(dir, &report, unverified, |n, hash, time, v| {
                if !filter.keeps(time, v) || error.is_some() {
                    return;
                }
                let row = Row {
                    n,
                    hash,
                    time,
                    visit: v,
                };
                let sep = if rows == 0 { "\n    " } else { ",\n    " };
                match serde_json::to_string(&row) {
                    Ok(s) => match write!(out, "{sep}{s}") {
                        Ok(()) => rows += 1,
                        Err(e) => error = Some(e.to_string()),
                    },
                    Err(e) => error = Some(e.to_string()),
                }
            })?;
            writeln!(out, "\n  ]\n}}").map_err(|e| e.to_string())?;
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok((report, rows)),
    }
}

/// Every visit up to the first broken line (all of them when
/// `unverified`), with its number, hash and time.
fn each_visit(
    dir: &Path,
    report: &Report,
    unverified: bool,
    mut f: impl FnMut(u64, &str, &str, &Visit),
) -> Result<(), String> {
    let stop = if unverified {
        None
    } else {
        report.broken.as_ref().map(|b| b.n)
    };
    each_line(dir, |raw| {
        let Ok(line) = serde_json::from_slice::<Line>(raw.bytes) else {
            return unverified;
        };
        if stop.is_some_and(|s| line.n >= s) {
            return false;
        }
        if let Body::Visit(v) = &line.body {
            f(line.n, &crate::line_hash(raw.bytes), &line.time, v);
        }
        true
    })?;
    Ok(())
}
