//! `fixative explain`: the verdict for one request, with every signal.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use fixative_config::Config;
use fixative_rules::{Engine, RequestFacts, Verdict};

/// Command-line arguments of `explain`.
pub struct Args {
    pub ua: Option<String>,
    pub ip: IpAddr,
    pub path: String,
    pub host: Option<String>,
    pub method: String,
    pub headers: Vec<String>,
    pub json: bool,
}

/// The site and policy a host selects: the proxy's own router (exact host,
/// then the longest wildcard, then the default site).
pub fn site_for<'a>(cfg: &'a Config, host: &str) -> (&'a str, &'a str) {
    let host = fixative_config::router::normalize_host(host).unwrap_or_default();
    let site = fixative_config::router::Router::new(cfg)
        .route(&host)
        .and_then(|i| cfg.sites.get(i));
    match site {
        Some(s) => (s.name.as_str(), s.policy.as_str()),
        None => ("(none)", "default"),
    }
}

pub fn render(v: &Verdict, site: &str, policy: &str, engine: &Engine) -> String {
    let mut out = String::new();
    let action = match v.action {
        fixative_rules::Action::Block(s) => format!("block ({s})"),
        fixative_rules::Action::Challenge(s) => format!("challenge ({s})"),
        fixative_rules::Action::Tarpit(s) => format!("tarpit ({s})"),
        a => a.as_str().to_string(),
    };
    out.push_str(&format!("site:     {site} (policy {policy})\n"));
    out.push_str(&format!("action:   {action}\n"));
    if let Some(w) = v.would {
        out.push_str(&format!("would:    {} (observe mode)\n", w.as_str()));
    }
    out.push_str(&format!("score:    {}\n", v.score));
    out.push_str(&format!("category: {}\n", v.category_label()));
    out.push_str(&format!(
        "crawler:  {}\n",
        v.crawler.as_deref().unwrap_or("-")
    ));
    if let Some(a) = &v.signed_agent {
        out.push_str(&format!(
            "signed:   {a} (Web Bot Auth signature verified)\n"
        ));
    }
    let pass = match v.pass {
        fixative_rules::pass::PassState::None => "none (no pass cookie)",
        fixative_rules::pass::PassState::Valid => "valid (browser check passed)",
        fixative_rules::pass::PassState::NoJs => "nojs (no-JavaScript path)",
        fixative_rules::pass::PassState::Automation => "automation (the check saw automation)",
        fixative_rules::pass::PassState::Invalid(i) => i.as_str(),
    };
    out.push_str(&format!("pass:     {pass}\n"));
    if let Some(g) = v.grace_left {
        out.push_str(&format!("grace:    {g} image(s) left without a pass\n"));
    }
    out.push_str(&format!(
        "rule:     {}\n",
        v.rule.as_deref().unwrap_or("- (no rule matched: allow)")
    ));
    if v.reasons.is_empty() {
        out.push_str("reasons:  none\n");
    } else {
        out.push_str("reasons:\n");
        for r in &v.reasons {
            let source = match engine.weight_source(v, r.signal) {
                "built-in" => "",
                s => s,
            };
            out.push_str(&format!(
                "  {:+4}  {:<32} {}{}\n",
                r.weight,
                r.signal,
                r.detail,
                if source.is_empty() {
                    String::new()
                } else {
                    format!(" [{source}]")
                }
            ));
        }
    }
    out
}

/// Runs `explain`.
pub fn run(cfg: &Config, a: &Args) -> ExitCode {
    let engine = match Engine::new(cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{}", cfg.error_at(&e.problems));
            return ExitCode::from(2);
        }
    };
    let mut headers = BTreeMap::new();
    for h in &a.headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("--header {h:?}: expected 'Name: value'");
            return ExitCode::from(2);
        };
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if let Some(ua) = &a.ua {
        headers.insert("user-agent".into(), ua.clone());
    }
    let host = a.host.clone().unwrap_or_default().to_ascii_lowercase();
    let (site, policy) = site_for(cfg, &host);
    let headers_known = a
        .headers
        .iter()
        .any(|h| !h.to_ascii_lowercase().starts_with("user-agent:"));
    let facts = RequestFacts {
        now: Duration::from_secs(1),
        client_ip: a.ip,
        method: &a.method,
        host: &host,
        path: &a.path,
        user_agent: headers.get("user-agent").map(String::as_str),
        headers_known,
        header: &headers,
        http10: false,
        rdns: fixative_rules::Rdns::Unknown,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        known: fixative_rules::Known::default(),
    };
    let v = engine.evaluate(&facts, policy);
    // The usage preference of this path on the routed site.
    let pref = fixative_config::router::Router::new(cfg)
        .route(&fixative_config::router::normalize_host(&host).unwrap_or_default())
        .and_then(|i| cfg.sites.get(i))
        .map(|s| {
            let d = &s.directives;
            let i = d.preference_for(&a.path);
            (d.preference_name(i).to_string(), d.variant(i).usage)
        });
    let word = |b: bool| if b { "allow" } else { "deny" };
    if a.json {
        let mut obj = serde_json::to_value(&v).unwrap_or_default();
        if let Some(o) = obj.as_object_mut() {
            o.insert("site".into(), site.into());
            o.insert("policy".into(), policy.into());
            if let Some((name, u)) = &pref {
                o.insert(
                    "preference".into(),
                    serde_json::json!({
                        "name": name,
                        "train_ai": word(u.train_ai),
                        "search": word(u.search),
                        "ai_input": word(u.ai_input),
                    }),
                );
            }
            if let Some(reasons) = o.get_mut("reasons").and_then(|r| r.as_array_mut()) {
                for (r, reason) in reasons.iter_mut().zip(&v.reasons) {
                    if let Some(r) = r.as_object_mut() {
                        r.insert(
                            "source".into(),
                            engine.weight_source(&v, reason.signal).into(),
                        );
                    }
                }
            }
        }
        println!("{obj}");
    } else {
        print!("{}", render(&v, site, policy, &engine));
        if let Some((name, u)) = &pref {
            println!(
                "usage:    preference {name}: train_ai {}, search {}, ai_input {}",
                word(u.train_ai),
                word(u.search),
                word(u.ai_input)
            );
        }
        if !headers_known {
            println!("(no --header given: header signals were not evaluated)");
        }
    }
    ExitCode::SUCCESS
}
