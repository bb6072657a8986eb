//! `fixative replay`: run an access log through the engine, in order,
//! with state (rates, traps), one JSON verdict per input line.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use fixative_config::Config;
use fixative_rules::{Engine, RequestFacts};
use serde::{Deserialize, Serialize};

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: ip, method, host, path, headers, time, status.
    Jsonl,
    /// The nginx/Apache "combined" access-log format.
    Combined,
}

#[derive(Deserialize)]
struct JsonLine {
    ip: IpAddr,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    host: String,
    #[serde(default = "slash")]
    path: String,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    time: Option<serde_json::Value>,
    #[serde(default)]
    status: Option<u16>,
}

fn get() -> String {
    "GET".into()
}
fn slash() -> String {
    "/".into()
}

/// One request parsed from a log line.
pub struct Parsed {
    pub ip: IpAddr,
    pub method: String,
    pub host: String,
    pub path: String,
    pub user_agent: Option<String>,
    /// Headers, when the format carries them (not `combined`).
    pub headers: Option<BTreeMap<String, String>>,
    /// Seconds since the Unix epoch, when the line has a time.
    pub time: Option<f64>,
    pub status: Option<u16>,
    pub http10: bool,
}

fn parse_time_str(s: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos() as f64 / 1e9);
    }
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    time::OffsetDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}

/// Parses one JSONL line.
pub fn parse_jsonl(line: &str) -> Result<Parsed, String> {
    let j: JsonLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let mut headers = j.headers.map(|h| {
        h.into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect::<BTreeMap<_, _>>()
    });
    let user_agent = headers.as_mut().and_then(|h| h.get("user-agent").cloned());
    let time = match j.time {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => {
            Some(parse_time_str(&s).ok_or(format!("time {s:?} is neither RFC 3339 nor a number"))?)
        }
        _ => None,
    };
    Ok(Parsed {
        ip: j.ip,
        method: j.method,
        host: j.host.to_ascii_lowercase(),
        path: j.path,
        user_agent,
        headers,
        time,
        status: j.status,
        http10: false,
    })
}

/// Parses one line of the combined format:
/// `IP - user [10/Oct/2000:13:55:36 -0700] "GET /p HTTP/1.1" 200 2326 "ref" "UA"`.
pub fn parse_combined(re: &regex::Regex, line: &str) -> Result<Parsed, String> {
    let c = re.captures(line).ok_or("not in the combined format")?;
    let ip = c[1]
        .parse::<IpAddr>()
        .map_err(|_| format!("{:?} is not an IP", &c[1]))?;
    let time = parse_time_str(&c[2]);
    let (method, path, proto) = {
        let mut it = c[3].split(' ');
        (
            it.next().unwrap_or("GET").to_string(),
            it.next().unwrap_or("/").to_string(),
            it.next().unwrap_or("HTTP/1.1").to_string(),
        )
    };
    let ua = c
        .get(5)
        .map(|m| m.as_str().to_string())
        .filter(|u| u != "-");
    Ok(Parsed {
        ip,
        method,
        host: String::new(),
        path,
        user_agent: ua,
        headers: None,
        time,
        status: c[4].parse().ok(),
        http10: proto == "HTTP/1.0",
    })
}

/// The regex for the combined format.
pub fn combined_regex() -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(
        r#"^(\S+) \S+ \S+ \[([^\]]+)\] "([^"]*)" (\d{3}) \S+(?: "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)")?"#,
    )
}

#[derive(Serialize)]
struct OutLine<'a> {
    line: usize,
    action: &'static str,
    score: i32,
    category: &'static str,
    crawler: Option<&'a str>,
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<&'static str>,
    reasons: Vec<String>,
}

/// Counts for the summary.
#[derive(Default)]
pub struct Summary {
    pub lines: usize,
    pub errors: usize,
    pub by_action: BTreeMap<String, usize>,
    pub by_category: BTreeMap<String, usize>,
    pub by_rule: BTreeMap<String, usize>,
    pub by_crawler: HashMap<String, usize>,
}

impl Summary {
    /// The table printed to stderr.
    pub fn render(&self) -> String {
        let mut s = format!(
            "replayed {} lines ({} unparsable)\n",
            self.lines, self.errors
        );
        let section =
            |s: &mut String, title: &str, m: &mut dyn Iterator<Item = (&String, &usize)>| {
                s.push_str(&format!("\n{title}\n"));
                for (k, n) in m {
                    s.push_str(&format!("  {n:>8}  {k}\n"));
                }
            };
        section(&mut s, "by action", &mut self.by_action.iter());
        section(&mut s, "by category", &mut self.by_category.iter());
        section(&mut s, "by rule", &mut self.by_rule.iter());
        let mut top: Vec<(&String, &usize)> = self.by_crawler.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        top.truncate(10);
        section(&mut s, "top crawlers", &mut top.into_iter());
        s
    }
}

/// Replays `input` and writes verdicts to `out`; returns the summary.
pub fn replay(
    cfg: &Config,
    engine: &Engine,
    format: Format,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<Summary> {
    let re = combined_regex().map_err(std::io::Error::other)?;
    let mut sum = Summary::default();
    let mut first_time: Option<f64> = None;
    let mut now = Duration::from_secs(1);
    let mut buf = String::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        if input.read_line(&mut buf)? == 0 {
            break;
        }
        n += 1;
        let line = buf.trim_end();
        if line.is_empty() {
            continue;
        }
        sum.lines += 1;
        let parsed = match format {
            Format::Jsonl => parse_jsonl(line),
            Format::Combined => parse_combined(&re, line),
        };
        let p = match parsed {
            Ok(p) => p,
            Err(e) => {
                sum.errors += 1;
                writeln!(out, "{}", serde_json::json!({"line": n, "error": e}))?;
                continue;
            }
        };
        if let Some(t) = p.time {
            let t0 = *first_time.get_or_insert(t);
            // Time never runs backwards for the engine.
            now = now.max(Duration::from_secs_f64((t - t0).max(0.0) + 1.0));
        }
        let (_, policy) = crate::explain::site_for(cfg, &p.host);
        let empty = BTreeMap::new();
        let facts = RequestFacts {
            now,
            client_ip: p.ip,
            method: &p.method,
            host: &p.host,
            path: &p.path,
            user_agent: p.user_agent.as_deref(),
            headers_known: p.headers.is_some(),
            header: p.headers.as_ref().unwrap_or(&empty),
            http10: p.http10,
            rdns: fixative_rules::Rdns::Unknown,
            unix_time: p.time.map(|t| t.max(0.0) as u64).unwrap_or(0),
            known: fixative_rules::Known::default(),
        };
        let v = engine.evaluate(&facts, policy);
        if let Some(status) = p.status {
            engine.record_status(p.ip, now, facts.unix_time, status);
        }
        *sum.by_action
            .entry(v.action.as_str().to_string())
            .or_default() += 1;
        *sum.by_category
            .entry(v.category_label().to_string())
            .or_default() += 1;
        *sum.by_rule
            .entry(v.rule.as_deref().unwrap_or("-").to_string())
            .or_default() += 1;
        if let Some(c) = &v.crawler {
            *sum.by_crawler.entry(c.to_string()).or_default() += 1;
        }
        let o = OutLine {
            line: n,
            action: v.action.as_str(),
            score: v.score,
            category: v.category_label(),
            crawler: v.crawler.as_deref(),
            rule: v.rule.as_deref(),
            would: v.would.map(|w| w.as_str()),
            reasons: v.reason_strings(),
        };
        serde_json::to_writer(&mut *out, &o)?;
        out.write_all(b"\n")?;
    }
    Ok(sum)
}

/// Runs `replay` on a file or `-` (stdin).
pub fn run(cfg: &Config, format: Format, file: &str) -> ExitCode {
    let engine = match Engine::new(cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{}", cfg.error_at(&e.problems));
            return ExitCode::from(2);
        }
    };
    let mut input: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match replay(cfg, &engine, format, &mut input, &mut out) {
        Ok(sum) => {
            let _ = out.flush();
            eprint!("{}", sum.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::FAILURE
        }
    }
}
