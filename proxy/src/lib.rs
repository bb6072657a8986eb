//! Fixative's Pingora glue.
//!
//! [`run`] turns a validated [`Config`] into a Pingora server: the proxy
//! service (plain and TLS listeners), the admin listener, the optional demo
//! origin, and background tasks (health checks, SIGHUP reload). This is the
//! only crate that does I/O on the request path; detection lives in
//! `fixative-rules`.

pub mod access_log;
pub mod activity;
pub mod admin;
pub mod background;
pub mod baseline;
mod bodies;
pub mod botauth;
pub mod challenge;
pub mod cloak;
pub mod conn;
pub mod dashboard;
pub mod demo;
pub mod directives;
mod errors;
pub mod evidence;
mod facts;
pub mod fleet;
pub mod forwarding;
pub mod framing;
pub mod html;
pub mod logbuf;
pub mod metrics;
pub mod names;
pub mod origin;
pub mod pages;
pub mod rdns;
mod record;
pub mod responses;
pub mod runtime;
pub mod service;
pub mod state;
pub mod tarpit;
pub mod tlshello;
pub mod value;
mod verdicts;

use std::sync::Arc;

use fixative_config::{AccessLog, Config};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use state::{ReloadOutcome, Shared};

/// Keeps the access-log writer alive; drop it to flush.
pub struct LogGuard {
    _guard: Option<logbuf::BatchGuard>,
}

/// Installs logging: diagnostics to stderr (filter with `RUST_LOG`,
/// default `info`), access log to the configured destination.
pub fn init_logging(log: &fixative_config::Log) -> Result<LogGuard, String> {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The `log` records of Pingora and other crates reach tracing through
    // its log bridge, which lets every level through by default: each
    // `debug!` on the request path would then be dispatched only to be
    // filtered out. Let through only what the filter can show.
    let log_level = match env.max_level_hint() {
        Some(l) if l >= tracing::level_filters::LevelFilter::TRACE => log::LevelFilter::Trace,
        Some(l) if l >= tracing::level_filters::LevelFilter::DEBUG => log::LevelFilter::Debug,
        Some(l) if l >= tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        Some(l) if l >= tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(l) if l >= tracing::level_filters::LevelFilter::ERROR => log::LevelFilter::Error,
        Some(_) => log::LevelFilter::Off,
        None => log::LevelFilter::Trace,
    };
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(env);
    let (access, guard) = match &log.access {
        AccessLog::Off => (None, None),
        AccessLog::Stdout => {
            let (w, g) = logbuf::BatchWriter::new(Box::new(std::io::stdout()));
            (Some(w), Some(g))
        }
        AccessLog::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("log.access: cannot open {}: {e}", path.display()))?;
            let (w, g) = logbuf::BatchWriter::new(Box::new(file));
            (Some(w), Some(g))
        }
        _ => (None, None),
    };
    tracing_subscriber::registry()
        .with(diagnostics)
        .try_init()
        .map_err(|e| format!("cannot install logging: {e}"))?;
    if let Some(w) = access
        && !access_log::install(w)
    {
        return Err("the access log is already installed".into());
    }
    log::set_max_level(log_level);
    Ok(LogGuard { _guard: guard })
}

/// Checks what the configuration layer cannot: that the TLS certificate
/// and key load in rustls and belong together. Pingora panics on a bad pair
/// when the listener starts; this turns that into an error naming the files.
pub fn preflight(config: &Config) -> Result<(), String> {
    if let Some(tls) = &config.server.tls {
        let cert = tls.cert.display().to_string();
        let key = tls.key.display().to_string();
        let loaded = pingora::tls::load_certs_and_key_files(&cert, &key)
            .map_err(|e| format!("server.tls: cannot load {cert} / {key}: {e}"))?;
        let Some((certs, key_der)) = loaded else {
            return Err(format!(
                "server.tls: {cert} / {key}: no usable certificate or private key"
            ));
        };
        pingora::tls::install_default_crypto_provider();
        pingora::tls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| format!("server.tls: {cert} and {key} do not form a usable pair: {e}"))?;
    }
    Ok(())
}

/// The client write buffer: 4 KiB instead of Pingora's 1,460 bytes. The
/// response header Fixative sends carries its no-train and rate-limit
/// headers (~500 bytes instead of the origin's ~250), which pushed a
/// header plus a 1 KiB body past 1,460 bytes and cost a second `sendto`
/// per response. With 4 KiB a small response leaves in one write; a
/// rewritten (chunked) page in three, as Pingora flushes the header of a
/// response without Content-Length, each chunk (size line, data and CRLF
/// in one `writev`, which [`conn::Guarded`] passes through) and the last
/// chunk.
/// `benches/load.sh` shows the effect (`cpu/req`); `tests/hardening.rs`
/// the per-connection memory bound.
const WRITE_BUFFER: usize = 4 * 1024;

/// Client socket buffers: a 16 KiB read buffer (one TLS record) instead
/// of Pingora's 64 KiB, so that many idle or half-open connections cost
/// little memory; large reads bypass it anyway. Writes: [`WRITE_BUFFER`].
fn l4_buffer() -> L4BufferSettings {
    L4BufferSettings::new(16 * 1024, WRITE_BUFFER)
}

/// Raises the soft limit on open files to the hard limit, so that the
/// configured connection caps, not the default 1024 descriptors, decide
/// how many clients are served.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-file limit");
            }
        }
    }
}

/// Everything `run` checks before it serves, without serving: the
/// configuration's TLS pair and the whole runtime (catalog and IP-range
/// files, network databases, policies, sites). `fixative check` and
/// `fixative run` both call it, so they accept and reject the same files.
pub fn check(config: &Config) -> Result<(), String> {
    preflight(config).map_err(|e| format!("{}: {e}", config.source_name))?;
    let metrics = Arc::new(metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    if config.state.shared() {
        // The URL as the client library reads it (no connection is made:
        // a node starts, and decides alone, while its store is down).
        fleet::client(&config.state).map_err(|e| format!("{}: {e}", config.source_name))?;
    }
    if let Some(e) = &config.evidence {
        fixative_evidence::private_key_from_pem(&e.signing_key_pem).map_err(|err| {
            format!(
                "{}: evidence.signing_key_file {}: {err}",
                config.source_name,
                e.signing_key_file.display()
            )
        })?;
        // `run` creates the directory and appends to it: the nearest
        // existing ancestor must be writable (nothing is created here).
        let existing = e.dir.ancestors().find(|p| p.exists());
        if let Some(dir) = existing
            && !(dir.is_dir() && writable(dir))
        {
            return Err(format!(
                "{}: evidence.dir {}: {} is not a directory this user can write to",
                config.source_name,
                e.dir.display(),
                dir.display()
            ));
        }
    }
    let mirror = Arc::new(fixative_rules::fleet::Fleet::new(config));
    runtime::Runtime::build(config.clone(), metrics, mirror, None).map(|_| ())
}

/// Whether this process may create files in `dir`.
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Pingora's server settings for a process named `name`: `threads`
/// workers, `grace` seconds of graceful shutdown, its pid file and upgrade
/// socket in the temporary directory, named after it and the process id.
pub(crate) fn server_conf(name: &str, threads: usize, grace: u64) -> ServerConf {
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let file = |suffix: &str| {
        tmp.join(format!("{name}-{pid}{suffix}"))
            .display()
            .to_string()
    };
    ServerConf {
        threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: file(".pid"),
        upgrade_sock: file("-upgrade.sock"),
        ..ServerConf::default()
    }
}

/// Runs Fixative until a shutdown signal; returns after a graceful stop.
///
/// Logging must already be installed ([`init_logging`]).
pub fn run(config: Config) -> Result<(), String> {
    preflight(&config)?;
    names::reserve_headroom();
    let metrics = Arc::new(metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let link = fleet::FleetLink::start(&config, metrics.clone())?;
    let first = runtime::Runtime::build(config.clone(), metrics.clone(), link.fleet.clone(), None)?;
    let ledger = config.evidence.as_ref().map(evidence::open).transpose()?;
    if let Some(e) = &config.evidence {
        tracing::info!("evidence ledger: {}", e.dir.display());
    }
    let shared = Arc::new(Shared::new(
        first,
        metrics,
        config.path.clone(),
        link,
        ledger,
    ));

    let conf = server_conf(
        "fixative",
        config.server.threads,
        config.server.grace_period.as_secs(),
    );
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    raise_fd_limit();
    // One connection table for every listener: the caps are per process.
    let table = Arc::new(conn::ConnTable::default());
    let server_conf = server.configuration.clone();
    let gated = |tls: bool| {
        let mut app = http_proxy(
            &server_conf,
            service::FixativeProxy::new(shared.clone(), tls),
        );
        let limits = &config.server.limits;
        let mut opts = HttpServerOptions::default();
        opts.h2_idle_timeout = Some(limits.keepalive_timeout);
        app.server_options = Some(opts);
        let mut h2 = pingora::protocols::http::v2::server::H2Options::new();
        h2.max_header_list_size(u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX));
        app.h2_options = Some(h2);
        conn::Gate::new(app, shared.clone(), table.clone())
    };

    if !config.server.listen.is_empty() {
        let mut proxy = Service::new("fixative proxy".to_string(), gated(false));
        proxy.set_connection_filter(Arc::new(conn::AcceptFilter::new(
            shared.clone(),
            table.clone(),
        )));
        for addr in &config.server.listen {
            proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(l4_buffer()));
        }
        server.add_service(proxy);
    }

    if let Some(tls) = &config.server.tls {
        let mut proxy = Service::new("fixative proxy (tls)".to_string(), gated(true));
        proxy.set_connection_filter(Arc::new(conn::AcceptFilter::new(
            shared.clone(),
            table.clone(),
        )));
        let cert = tls.cert.display().to_string();
        let key = tls.key.display().to_string();
        let mut settings =
            TlsSettings::intermediate(&cert, &key).map_err(|e| format!("server.tls: {e}"))?;
        settings.enable_h2();
        proxy.add_listener(
            ListenerConfig::tcp(tls.listen.to_string())
                .tls(settings)
                .l4_buffer(l4_buffer()),
        );
        // The ClientHello, for the TLS fingerprint.
        proxy
            .endpoints()
            .set_pre_tls_callback(Arc::new(tlshello::HelloReader::new(shared.hellos.clone())));
        server.add_service(proxy);
    }

    let mut admin = Service::new(
        "fixative admin".to_string(),
        admin::Admin::new(shared.clone()),
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.server.admin.to_string());
    server.add_service(admin);

    if let Some(demo) = &config.demo {
        let mut origin = Service::new("fixative demo origin".to_string(), demo::DemoOrigin);
        origin.threads = Some(1);
        origin.add_tcp(&demo.listen.to_string());
        server.add_service(origin);
    }

    server.add_service(background_service(
        "upstream health checks",
        background::HealthChecks::new(shared.clone()),
    ));
    server.add_service(background_service(
        "reload on SIGHUP",
        background::ReloadOnHangup::new(shared.clone()),
    ));

    server.run(RunArgs {
        shutdown_signal: Box::new(background::Signals),
    });
    Ok(())
}
