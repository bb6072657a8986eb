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
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
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
