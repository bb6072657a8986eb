//! The `fixative` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fixative_config::{Config, DEFAULT_TOML};

#[derive(Parser)]
#[command(
    name = "fixative",
    version,
    about = "Edge reverse proxy that keeps AI-training scrapers off artists' work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (on the embedded default with its demo origin when
    /// --config is omitted).
    Run {
        /// Configuration file (TOML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print a one-line summary.
    Check {
        /// Configuration file (TOML); the embedded default when omitted.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Explain the verdict for one request: every signal, weight and the
    /// deciding rule.
    Explain {
        /// Configuration file (TOML); the embedded default when omitted.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// User-Agent header.
        #[arg(long)]
        ua: Option<String>,
        /// Client IP address.
        #[arg(long, default_value = "192.0.2.1")]
        ip: std::net::IpAddr,
        /// Path and query.
        #[arg(long, default_value = "/")]
        path: String,
        /// Host (selects the site and so its policy).
        #[arg(long)]
        host: Option<String>,
        /// Method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Extra header, `'Name: value'`; repeatable. When no header is given,
        /// header signals are not evaluated (as for a log without headers).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the embedded default configuration, commented.
    PrintDefault,
}

fn load(config: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load_or_default(config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn banner(cfg: &Config) {
    let Some(listen) = cfg.server.listen.first() else {
        return;
    };
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        listen.ip().to_string()
    };
    let url = format!("http://{host}:{}/", listen.port());
    eprintln!();
    eprintln!(
        "  Fixative {} is running ({}).",
        env!("CARGO_PKG_VERSION"),
        cfg.source_name
    );
    eprintln!("  Site:     {url}");
    if let Some(demo) = &cfg.demo {
        eprintln!(
            "  Demo origin (direct, unprotected): http://{}/",
            demo.listen
        );
    }
    eprintln!("  Metrics:  http://{}/metrics", cfg.server.admin);
    eprintln!();
    eprintln!("  Try it:");
    eprintln!(
        "    curl -i -A 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0' -H 'Accept: text/html' {url}"
    );
    eprintln!("    curl -i -A GPTBot {url}");
    eprintln!();
    eprintln!("  Access log (JSON, one line per request) follows on stdout. Ctrl-C stops.");
    eprintln!();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(config.as_deref()) {
            Ok(cfg) => {
                if let Err(e) = fixative_proxy::preflight(&cfg) {
                    eprintln!("{}: {e}", cfg.source_name);
                    return ExitCode::from(2);
                }
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Explain {
            config,
            ua,
            ip,
            path,
            host,
            method,
            headers,
            json,
        } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            explain(&cfg, ua, ip, &path, host, &method, &headers, json)
        }
        Command::Config {
            command: ConfigCommand::PrintDefault,
        } => {
            print!("{DEFAULT_TOML}");
            ExitCode::SUCCESS
        }
        Command::Run { config } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = fixative_proxy::preflight(&cfg) {
                eprintln!("{}: {e}", cfg.source_name);
                return ExitCode::from(2);
            }
            let guard = match fixative_proxy::init_logging(&cfg.log) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            banner(&cfg);
            let result = fixative_proxy::run(cfg);
            drop(guard);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fixative: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn explain(
    cfg: &Config,
    ua: Option<String>,
    ip: std::net::IpAddr,
    path: &str,
    host: Option<String>,
    method: &str,
    headers: &[String],
    json: bool,
) -> ExitCode {
    let engine = match fixative_rules::Engine::with_default_catalog() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("catalog: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut parsed: Vec<(String, String)> = Vec::new();
    for h in headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("--header {h:?}: expected 'Name: value'");
            return ExitCode::from(2);
        };
        parsed.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| parsed.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let host = host.unwrap_or_default().to_ascii_lowercase();
    let site = cfg
        .sites
        .iter()
        .position(|s| s.hosts.iter().any(|p| p.matches(&host)))
        .or(cfg.default_site);
    let site_cfg = site.and_then(|i| cfg.sites.get(i));
    let policy = site_cfg
        .and_then(|s| fixative_rules::Policy::by_name(&s.policy))
        .unwrap_or(fixative_rules::Policy::Default);
    let facts = fixative_rules::RequestFacts {
        client_ip: ip,
        method,
        host: &host,
        path,
        user_agent: ua.as_deref().or(get("user-agent")),
        headers_known: !parsed.is_empty(),
        accept: get("accept"),
        accept_language: get("accept-language"),
        sec_fetch_mode: get("sec-fetch-mode"),
        sec_ch_ua: get("sec-ch-ua"),
        http10: false,
    };
    let v = engine.evaluate(&facts, policy);
    let site_name = site_cfg.map(|s| s.name.as_str()).unwrap_or("none");
    if json {
        let mut obj = serde_json::to_value(&v).unwrap_or_default();
        if let Some(o) = obj.as_object_mut() {
            o.insert("site".into(), site_name.into());
            o.insert("policy".into(), format!("{policy:?}").to_lowercase().into());
        }
        println!("{obj}");
    } else {
        println!(
            "site:     {site_name} (policy {})",
            format!("{policy:?}").to_lowercase()
        );
        println!(
            "action:   {}",
            match v.action {
                fixative_rules::Action::Block(s) => format!("block ({s})"),
                a => a.as_str().to_string(),
            }
        );
        if let Some(w) = v.would {
            println!("would:    {} (observe mode)", w.as_str());
        }
        println!("score:    {}", v.score);
        println!("category: {}", v.category_label());
        println!("crawler:  {}", v.crawler.as_deref().unwrap_or("-"));
        println!(
            "rule:     {}",
            v.rule.as_deref().unwrap_or("- (no rule matched: allow)")
        );
        if v.reasons.is_empty() {
            println!("reasons:  none");
        } else {
            println!("reasons:");
            for r in &v.reasons {
                println!("  {:+4}  {:<28} {}", r.weight, r.signal, r.detail);
            }
        }
        if !facts.headers_known {
            println!("(no --header given: header signals were not evaluated)");
        }
    }
    ExitCode::SUCCESS
}
