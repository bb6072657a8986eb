//! The `fixative` command line.

use std::path::PathBuf;
use std::process::ExitCode;

mod evidence;
mod explain;
mod ipranges;
mod protect;
mod replay;

use clap::{Parser, Subcommand};

// The proxy allocates per request (headers, buffers); mimalloc is markedly
// cheaper than glibc malloc under many threads (measured with benches/load.sh).
#[cfg(not(feature = "count-allocs"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// For `ALLOCS=1 benches/load.sh` only (`--features count-allocs`): the
/// system allocator, counting every allocation into
/// `fixative_debug_allocations_total`.
#[cfg(feature = "count-allocs")]
#[global_allocator]
static GLOBAL: fixative_proxy::metrics::CountingAlloc = fixative_proxy::metrics::CountingAlloc;
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
    /// Run an access log through the engine, in order and with state;
    /// one JSON verdict per input line on stdout, a summary on stderr.
    Replay {
        /// Configuration file (TOML); the embedded default when omitted.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Input format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: replay::Format,
        /// Log file, or `-` for standard input.
        file: String,
    },
    /// Print a new random secret (32 bytes, hex) for `protector.secret`
    /// or any other key setting.
    Secret,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The image protector: make protected variants, find marks.
    Protector {
        #[command(subcommand)]
        command: ProtectorCommand,
    },
    /// The evidence ledger: verify it, export visits, make a signing key.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Crawler IP-range lists.
    #[command(name = "ip-ranges")]
    IpRanges {
        #[command(subcommand)]
        command: IpRangesCommand,
    },
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Check the chain and every seal; names the first broken record
    /// (exit 1 when one is).
    Verify {
        /// The ledger's directory (`evidence.dir`).
        dir: PathBuf,
        /// The operator's public key (PEM or base64) the seals must be
        /// made with.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the visits of a verified ledger as CSV or JSON (stdout).
    Export {
        /// The ledger's directory.
        dir: PathBuf,
        /// Only this crawler (its catalog name; `unknown` for unnamed
        /// scrapers).
        #[arg(long)]
        crawler: Option<String>,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Only the visit served this watermark payload (as `fixative
        /// protector detect` prints it).
        #[arg(long)]
        watermark: Option<String>,
        /// From this date (2026-11-30) or time (RFC 3339) on.
        #[arg(long)]
        since: Option<String>,
        /// Before this date or time.
        #[arg(long)]
        until: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// The public key the seals must be made with.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Export even if the ledger does not verify (the JSON says so).
        #[arg(long)]
        unverified: bool,
    },
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and its
    /// public key beside it (`.pub`).
    Keygen {
        /// Where to write the private key.
        path: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum IpRangesCommand {
    /// Fetch the published lists the catalog names into DIR, each
    /// validated and renamed into place atomically (point
    /// `detection.ip_ranges_dir` at DIR; the proxy reloads them).
    Update {
        /// Target directory.
        dir: PathBuf,
        /// Configuration whose `detection.catalog_files` add or replace
        /// sources.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Only these files (repeatable), e.g. `--only gptbot.json`.
        #[arg(long)]
        only: Vec<String>,
        /// Per-request timeout.
        #[arg(long, default_value = "30s")]
        timeout: humantime::Duration,
    },
}

#[derive(Subcommand)]
enum ProtectorCommand {
    /// Write a protected variant of an image.
    Cloak {
        /// Input image (JPEG, PNG, WebP).
        input: PathBuf,
        /// Output file (same format).
        output: PathBuf,
        /// Profile: built-in watermark (full size), preview or cloak (512 px),
        /// or one defined in the configuration.
        #[arg(long, default_value = "cloak")]
        profile: String,
        /// 64-bit payload, hex.
        #[arg(long)]
        payload: Option<String>,
        /// Watermark secret (default: `protector.secret` of the configuration).
        #[arg(long)]
        secret: Option<String>,
        /// Configuration file (profiles, secret); the embedded default when omitted.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Look for a watermark in an image (informed: needs the original).
    Detect {
        /// The suspect image.
        image: PathBuf,
        /// Its original.
        #[arg(long)]
        original: Option<PathBuf>,
        /// A directory of originals, searched by perceptual hash.
        #[arg(long)]
        originals: Option<PathBuf>,
        /// Watermark secret (default: `protector.secret` of --config).
        #[arg(long)]
        secret: Option<String>,
        /// Configuration file whose `protector.secret` marked the images.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
                if let Err(e) = fixative_proxy::check(&cfg) {
                    eprintln!("{e}");
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
            explain::run(
                &cfg,
                &explain::Args {
                    ua,
                    ip,
                    path,
                    host,
                    method,
                    headers,
                    json,
                },
            )
        }
        Command::Replay {
            config,
            format,
            file,
        } => match load(config.as_deref()) {
            Ok(cfg) => replay::run(&cfg, format, &file),
            Err(code) => code,
        },
        Command::Protector { command } => match command {
            ProtectorCommand::Cloak {
                input,
                output,
                profile,
                payload,
                secret,
                config,
            } => match load(config.as_deref()) {
                Ok(cfg) => protect::cloak(
                    &cfg,
                    &input,
                    &output,
                    &profile,
                    payload.as_deref(),
                    secret.as_deref(),
                ),
                Err(code) => code,
            },
            ProtectorCommand::Detect {
                image,
                original,
                originals,
                secret,
                config,
                json,
            } => {
                let secret = match (secret, &config) {
                    (Some(s), _) => s,
                    (None, Some(path)) => match load(Some(path)) {
                        Ok(cfg) if !cfg.protector.secret.is_empty() => cfg.protector.secret,
                        Ok(_) => {
                            eprintln!("{}: protector.secret is not set", path.display());
                            return ExitCode::from(2);
                        }
                        Err(code) => return code,
                    },
                    (None, None) => {
                        eprintln!(
                            "no watermark key: give --secret, or --config with the protector.secret that marked the images"
                        );
                        return ExitCode::from(2);
                    }
                };
                protect::detect(
                    &image,
                    original.as_deref(),
                    originals.as_deref(),
                    &secret,
                    json,
                )
            }
        },
        Command::Evidence { command } => match command {
            EvidenceCommand::Verify {
                dir,
                public_key,
                json,
            } => evidence::verify(&dir, public_key.as_deref(), json),
            EvidenceCommand::Export {
                dir,
                crawler,
                site,
                watermark,
                since,
                until,
                format,
                public_key,
                unverified,
            } => evidence::export(
                &dir,
                &evidence::ExportArgs {
                    crawler,
                    site,
                    watermark,
                    since: since.as_deref(),
                    until: until.as_deref(),
                    format: match format {
                        ExportFormat::Csv => fixative_evidence::Export::Csv,
                        ExportFormat::Json => fixative_evidence::Export::Json,
                    },
                    key: public_key.as_deref(),
                    unverified,
                },
            ),
            EvidenceCommand::Keygen { path } => evidence::keygen(&path),
        },
        Command::IpRanges {
            command:
                IpRangesCommand::Update {
                    dir,
                    config,
                    only,
                    timeout,
                },
        } => match load(config.as_deref()) {
            Ok(cfg) => ipranges::update(&cfg, &dir, &only, timeout.into()),
            Err(code) => code,
        },
        Command::Secret => match fixative_config::random_secret() {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot read the system's random source: {e}");
                ExitCode::FAILURE
            }
        },
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
            // The same checks as `fixative check`, before anything starts.
            if let Err(e) = fixative_proxy::check(&cfg) {
                eprintln!("{e}");
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
