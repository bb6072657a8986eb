//! Detection measured on a corpus of real user agents (see
//! `tests/corpus/README.md`): recall on bots and AI crawlers, and false
//! positives on real browsers with realistic headers. Prints the figures.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use fixative_rules::{Action, Category, Engine, RequestFacts, Verdict};

fn rows(name: &str) -> Vec<Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn eval(
    e: &Engine,
    i: usize,
    ua: &str,
    headers: Option<&BTreeMap<String, String>>,
    path: &str,
) -> Verdict {
    let empty = BTreeMap::new();
    // A fresh address per request: rate limits play no part here.
    let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    e.evaluate(
        &RequestFacts {
            now: Duration::from_secs(1),
            client_ip: ip,
            method: "GET",
            host: "a.test",
            path,
            user_agent: Some(ua),
            headers_known: headers.is_some(),
            header: headers.unwrap_or(&empty),
            http10: false,
            rdns: fixative_rules::Rdns::Unknown,
            unix_time: 0,
            known: fixative_rules::Known::default(),
        },
        "default",
    )
}

fn major(ua: &str, tok: &str) -> Option<u32> {
    let i = ua.find(tok)? + tok.len();
    ua.get(i..)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The headers this browser sends on a page navigation.
fn browser_headers(ua: &str) -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    h.insert(
        "accept".into(),
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
            .into(),
    );
    h.insert("accept-language".into(), "en-US,en;q=0.9".into());
    h.insert("accept-encoding".into(), "gzip, deflate, br".into());
    let chrome = major(ua, "Chrome/");
    let firefox = major(ua, "Firefox/");
    let safari = major(ua, "Version/").filter(|_| ua.contains("Safari/") && chrome.is_none());
    let fetch_meta = chrome.is_some_and(|v| v >= 76)
        || firefox.is_some_and(|v| v >= 90)
        || safari.is_some_and(|v| v >= 16);
    if fetch_meta {
        h.insert("sec-fetch-mode".into(), "navigate".into());
        h.insert("sec-fetch-dest".into(), "document".into());
        h.insert("sec-fetch-site".into(), "none".into());
    }
    if let Some(v) = chrome.filter(|v| *v >= 89) {
        let brand = if ua.contains("Edg/") {
            "Microsoft Edge"
        } else {
            "Google Chrome"
        };
        h.insert(
            "sec-ch-ua".into(),
            format!("\"Chromium\";v=\"{v}\", \"{brand}\";v=\"{v}\", \"Not?A_Brand\";v=\"99\""),
        );
        h.insert(
            "sec-ch-ua-mobile".into(),
            if ua.contains("Mobile") { "?1" } else { "?0" }.into(),
        );
    }
    h
}

fn pct(n: usize, d: usize) -> f64 {
    100.0 * n as f64 / d.max(1) as f64
}

#[test]
fn bots_are_detected_and_browsers_never_touched() {
    let e = Engine::with_default_config()
        .unwrap()
        .as_of("2026-11-25")
        .unwrap();
    let bots = rows("bots.tsv");
    assert!(bots.len() >= 300, "{}", bots.len());
    let (mut ai, mut ai_hit, mut ai_named) = (0, 0, 0);
    let (mut other, mut other_hit) = (0, 0);
    let (mut unknown, mut unknown_hit) = (0, 0);
    let mut missed = Vec::new();
    for (i, r) in bots.iter().enumerate() {
        let (kind, ua) = (r[0].as_str(), r[2].as_str());
        let v = eval(&e, i, ua, None, "/");
        let named = e.catalog().match_ua(ua).is_some_and(|m| !m.weak);
        let hit = v.category.is_some();
        if kind == "ai" {
            ai += 1;
            ai_hit += usize::from(hit);
            ai_named += usize::from(matches!(
                v.category,
                Some(Category::AiTraining | Category::AiSearch | Category::AiAssistant)
            ));
        } else {
            other += 1;
            other_hit += usize::from(hit);
        }
        if !named {
            unknown += 1;
            unknown_hit += usize::from(v.category == Some(Category::UnknownBot));
        }
        if !hit {
            missed.push(ua.to_string());
        }
    }
    let browsers = rows("browsers.tsv");
    assert!(browsers.len() >= 1000, "{}", browsers.len());
    let mut touched = Vec::new();
    for (i, r) in browsers.iter().enumerate() {
        let ua = r[1].as_str();
        let h = browser_headers(ua);
        for path in ["/gallery/", "/art/piece.jpg"] {
            let v = eval(&e, 100_000 + i, ua, Some(&h), path);
            let bad = v.category.is_some()
                || !matches!(v.action, Action::Allow | Action::Limit)
                || v.score >= 80;
            if bad {
                touched.push(format!("{ua} [{path}]: {v:?}"));
            }
        }
    }
    eprintln!(
        "corpus: AI crawlers flagged {ai_hit}/{ai} ({:.1}%), identified as AI {ai_named}/{ai} ({:.1}%); \
other bots flagged {other_hit}/{other} ({:.1}%); bots in no catalog entry caught as unknown-bot \
{unknown_hit}/{unknown} ({:.1}%); browsers touched {}/{} with realistic headers (page and image)",
        pct(ai_hit, ai),
        pct(ai_named, ai),
        pct(other_hit, other),
        pct(unknown_hit, unknown),
        touched.len(),
        browsers.len() * 2,
    );
    for m in missed.iter().take(60) {
        eprintln!("  missed: {m}");
    }
    assert!(
        touched.is_empty(),
        "browsers touched:\n{}",
        touched.join("\n")
    );
    assert!(pct(ai_hit, ai) >= 99.0, "AI recall {:.1}%", pct(ai_hit, ai));
    assert!(
        pct(unknown_hit, unknown) >= 95.0,
        "unknown-bot recall {:.1}%",
        pct(unknown_hit, unknown)
    );
}
