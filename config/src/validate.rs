//! Validation: raw structs in, [`Config`] or every problem out.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::policy::PolicyConfig;
use crate::raw::RawConfig;
use crate::spans::{KeyPath, Spans};
use crate::{
    AccessLog, Config, ConfigError, Demo, HostPattern, Log, Problem, Server, Site, Tls, Upstream,
    UpstreamTls,
};

pub(crate) struct Ctx<'a> {
    pub(crate) spans: Spans,
    pub(crate) problems: Vec<Problem>,
    pub(crate) base_dir: Option<&'a Path>,
}

/// Parses a CIDR or a bare IP (as a host network).
pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl Ctx<'_> {
    pub(crate) fn err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
            line: self.spans.line(path),
        });
    }

    /// Whether a problem was already reported at this key.
    pub(crate) fn has_problem_at(&self, path: &KeyPath) -> bool {
        let p = path.to_string();
        self.problems.iter().any(|x| x.path == p)
    }

    pub(crate) fn resolve_path(&self, p: &str) -> PathBuf {
        let pb = PathBuf::from(p);
        match self.base_dir {
            Some(base) if pb.is_relative() => base.join(pb),
            _ => pb,
        }
    }

    fn addr(&mut self, path: &KeyPath, s: &str) -> Option<SocketAddr> {
        match parse_addr(s) {
            Ok(a) => Some(a),
            Err(msg) => {
                self.err(path, format!("{s:?} {msg}"));
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, path: &KeyPath, s: &str, max: Duration) -> Duration {
        match humantime::parse_duration(s) {
            Ok(d) if d <= max => d,
            Ok(_) => {
                self.err(
                    path,
                    format!("{s:?} is longer than {}", humantime::format_duration(max)),
                );
                Duration::ZERO
            }
            Err(e) => {
                self.err(
                    path,
                    format!("{s:?} is not a duration ({e}); write e.g. \"5s\" or \"250ms\""),
                );
                Duration::ZERO
            }
        }
    }
}

/// Parses `host:port` (IP or resolvable name).
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err("has no port".into());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("has no port".into());
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("has an invalid port {port:?}"));
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| "does not resolve".to_string()),
        Err(e) => Err(format!("does not resolve ({e})")),
    }
}

fn valid_host_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

fn parse_host_pattern(s: &str) -> Result<HostPattern, String> {
    let lower = s.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err("is empty".into());
    }
    if lower.contains(':') && lower.parse::<IpAddr>().is_err() {
        return Err("must not contain a port (hosts match without the port)".into());
    }
    if lower.parse::<IpAddr>().is_ok() {
        return Ok(HostPattern::Exact(lower));
    }
    let (wild, rest) = match lower.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, lower.as_str()),
    };
    if rest.is_empty() || !rest.split('.').all(valid_host_label) {
        return Err("is not a valid host name (use \"example.com\" or \"*.example.com\")".into());
    }
    Ok(if wild {
        HostPattern::Wildcard(format!(".{rest}"))
    } else {
        HostPattern::Exact(rest.to_string())
    })
}

fn check_pem_pair(ctx: &mut Ctx<'_>, path: &KeyPath, cert: &Path, key: &Path) {
    match std::fs::read(cert) {
        Err(e) => ctx.err(
            &path.key("cert"),
            format!("cannot read certificate {}: {e}", cert.display()),
        ),
        Ok(bytes) => {
            let certs: Result<Vec<CertificateDer<'_>>, _> =
                CertificateDer::pem_slice_iter(&bytes).collect();
            match certs {
                Ok(c) if !c.is_empty() => {}
                Ok(_) => ctx.err(
                    &path.key("cert"),
                    format!("{} holds no PEM certificate", cert.display()),
                ),
                Err(e) => ctx.err(
                    &path.key("cert"),
                    format!("{} is not a valid PEM certificate: {e}", cert.display()),
                ),
            }
        }
    }
    match std::fs::read(key) {
        Err(e) => ctx.err(
            &path.key("key"),
            format!("cannot read private key {}: {e}", key.display()),
        ),
        Ok(bytes) => {
            if let Err(e) = PrivateKeyDer::from_pem_slice(&bytes) {
                ctx.err(
                    &path.key("key"),
                    format!("{} holds no valid PEM private key: {e}", key.display()),
                );
            }
        }
    }
}

pub(crate) fn load(
    src: &str,
    source_name: &str,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let spans = Spans::new(src);
    let raw: RawConfig = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map(|s| s.start);
            let path = offset
                .and_then(|o| spans.path_at(o))
                .map(|p| p.to_string())
                .unwrap_or_default();
            return Err(ConfigError {
                source_name: source_name.to_string(),
                problems: vec![Problem {
                    path,
                    message: e.message().trim().to_string(),
                    line: offset.map(|o| spans.line_of_offset(o)),
                }],
            });
        }
    };
    let mut ctx = Ctx {
        spans,
        problems: Vec::new(),
        base_dir,
    };
    let cfg = validate(&mut ctx, raw, source_name);
    if ctx.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError {
            source_name: source_name.to_string(),
            problems: ctx.problems,
        })
    }
}

/// The built-in policies, validated (a failure here is a bug, caught by tests).
fn builtin_policies() -> BTreeMap<String, PolicyConfig> {
    builtin_policies_checked().0
}

fn builtin_policies_checked() -> (BTreeMap<String, PolicyConfig>, Vec<Problem>) {
    let mut out = BTreeMap::new();
    let raw: crate::raw::RawPolicies = match toml::from_str(crate::policy::BUILTIN_POLICIES) {
        Ok(r) => r,
        Err(e) => {
            return (
                out,
                vec![Problem {
                    path: String::new(),
                    message: e.to_string(),
                    line: None,
                }],
            );
        }
    };
    let mut ctx = Ctx {
        spans: Spans::new(crate::policy::BUILTIN_POLICIES),
        problems: Vec::new(),
        base_dir: None,
    };
    crate::policy::validate_policies(&mut ctx, &raw.policy, &mut out);
    (out, ctx.problems)
}

/// Known public values are refused: a watermark key anyone can read lets
/// anyone read, strip or forge the marks.
const PUBLIC_SECRETS: &[&str] = &["fixative-default-secret", "changeme", "change-me", "secret"];

pub(crate) fn check_secret(ctx: &mut Ctx<'_>, path: &KeyPath, s: &str) {
    if s.len() < 16 {
        ctx.err(
            path,
            "must be at least 16 characters; generate one with `fixative secret`",
        );
    } else if PUBLIC_SECRETS.iter().any(|p| s.eq_ignore_ascii_case(p)) {
        ctx.err(
            path,
            "is a publicly known value; generate your own with `fixative secret`",
        );
    }
}

/// `secret` or the trimmed contents of `secret_file` (empty when neither
/// is given), checked with [`check_secret`].
pub(crate) fn read_secret(
    ctx: &mut Ctx<'_>,
    section: &KeyPath,
    name: &str,
    secret: Option<&str>,
    secret_file: Option<&str>,
) -> String {
    match (secret, secret_file) {
        (Some(_), Some(_)) => {
            ctx.err(
                &section.key("secret_file"),
                format!("give either {name}.secret or {name}.secret_file, not both"),
            );
            String::new()
        }
        (Some(s), None) => {
            check_secret(ctx, &section.key("secret"), s);
            s.to_string()
        }
        (None, Some(f)) => {
            let path = ctx.resolve_path(f);
            match std::fs::read_to_string(&path) {
                Ok(s) => {
                    let s = s.trim().to_string();
                    check_secret(ctx, &section.key("secret_file"), &s);
                    s
                }
                Err(e) => {
                    ctx.err(
                        &section.key("secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    String::new()
                }
            }
        }
        (None, None) => String::new(),
    }
}

/// 32 random bytes from the operating system, as hex.
pub fn random_secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Whether some enforced rule of a site's policy cloaks (and so marks
/// images with the watermark key).
fn cloak_needs_key(cfg: &Config) -> bool {
    cfg.sites.iter().any(|s| {
        cfg.policies.get(&s.policy).is_some_and(|p| {
            p.mode != crate::policy::Mode::Observe
                && p.rules.iter().any(|r| {
                    matches!(
                        r.action,
                        crate::policy::RuleAction::Cloak | crate::policy::RuleAction::Challenge(_)
                    ) && r.mode != crate::policy::Mode::Observe
                })
        })
    })
}

/// A site whose policy can answer `cloak` needs a watermark key of the
/// operator's own; the embedded demo gets a random one per run.
fn require_secret(ctx: &mut Ctx<'_>, cfg: &mut Config, protector_line_path: &KeyPath) {
    if !cfg.protector.secret.is_empty()
        || (!cfg.challenge.secret.is_empty() && !cloak_needs_key(cfg))
        || ctx
            .problems
            .iter()
            .any(|p| p.path.starts_with("protector.secret"))
    {
        return;
    }
    // Passes are signed with challenge.secret, or a key derived from
    // protector.secret: a policy that issues or reads passes needs one too.
    let uses = |r: &crate::policy::RuleConfig| {
        matches!(
            r.action,
            crate::policy::RuleAction::Cloak | crate::policy::RuleAction::Challenge(_)
        ) || r.matches.pass.is_some()
            || r.matches.automation.is_some()
    };
    let cloaking: Vec<&str> = cfg
        .sites
        .iter()
        .filter(|s| {
            cfg.policies.get(&s.policy).is_some_and(|p| {
                p.mode != crate::policy::Mode::Observe
                    && p.rules
                        .iter()
                        .any(|r| uses(r) && r.mode != crate::policy::Mode::Observe)
            })
        })
        .map(|s| s.name.as_str())
        .collect();
    if cloaking.is_empty() {
        return;
    }
    if cfg.demo.is_some() {
        match random_secret() {
            Ok(s) => {
                cfg.protector.secret = s;
                cfg.protector.secret_generated = true;
            }
            Err(e) => ctx.err(
                protector_line_path,
                format!("cannot generate a watermark key for the demo: {e}"),
            ),
        }
        return;
    }
    let sites = cloaking.join(", ");
    ctx.err(
        protector_line_path,
        format!(
            "not set: site(s) {sites} can serve protected images, which are marked with a key of your own; generate one with `fixative secret` and set protector.secret (or protector.secret_file)"
        ),
    );
}

fn validate_limits(ctx: &mut Ctx<'_>, l: &crate::raw::RawLimits, lp: &KeyPath) -> crate::Limits {
    let d = crate::Limits::default();
    let range = |ctx: &mut Ctx<'_>, key: &str, v: i64, lo: i64, hi: i64, fallback: usize| {
        if (lo..=hi).contains(&v) {
            v as usize
        } else {
            ctx.err(&lp.key(key), format!("{v} is out of range ({lo} to {hi})"));
            fallback
        }
    };
    let max_connections = range(
        ctx,
        "max_connections",
        l.max_connections,
        1,
        10_000_000,
        d.max_connections,
    );
    let max_connections_per_client = range(
        ctx,
        "max_connections_per_client",
        l.max_connections_per_client,
        1,
        10_000_000,
        d.max_connections_per_client,
    );
    // Pingora's own parser stops at 1 MiB.
    let max_request_header_bytes = range(
        ctx,
        "max_request_header_bytes",
        l.max_request_header_bytes,
        1024,
        1024 * 1024 - 1,
        d.max_request_header_bytes,
    );
    let max_response_header_bytes = range(
        ctx,
        "max_response_header_bytes",
        l.max_response_header_bytes,
        1024,
        1024 * 1024 - 1,
        d.max_response_header_bytes,
    );
    let hour = Duration::from_secs(3600);
    let timeout = |ctx: &mut Ctx<'_>, key: &str, v: &str| {
        let t = ctx.duration(&lp.key(key), v, hour);
        if t.is_zero() && !ctx.problems.iter().any(|p| p.path.ends_with(key)) {
            ctx.err(&lp.key(key), "must be greater than zero");
        }
        t
    };
    let header_timeout = timeout(ctx, "header_timeout", &l.header_timeout);
    let keepalive_timeout = timeout(ctx, "keepalive_timeout", &l.keepalive_timeout);
    let send_timeout = timeout(ctx, "send_timeout", &l.send_timeout);
    crate::Limits {
        max_connections,
        max_connections_per_client,
        header_timeout,
        keepalive_timeout,
        max_request_header_bytes,
        max_response_header_bytes,
        send_timeout,
    }
}

fn validate_protector(
    ctx: &mut Ctx<'_>,
    p: &crate::raw::RawProtector,
    raw_profiles: &BTreeMap<String, crate::raw::RawProfile>,
) -> crate::Protector {
    let pp = KeyPath::root().key("protector");
    let range = |ctx: &mut Ctx<'_>, key: &str, v: i64, lo: i64, hi: i64| -> i64 {
        if (lo..=hi).contains(&v) {
            v
        } else {
            ctx.err(&pp.key(key), format!("{v} is out of range ({lo} to {hi})"));
            lo
        }
    };
    let preview_max_side = range(ctx, "preview_max_side", p.preview_max_side, 64, 8192) as u32;
    let workers = range(ctx, "workers", p.workers, 1, 256) as usize;
    let queue = range(ctx, "queue", p.queue, 0, 10_000) as usize;
    let max_input_bytes = range(
        ctx,
        "max_input_bytes",
        p.max_input_bytes,
        1024,
        512 * 1024 * 1024,
    ) as usize;
    let cache_bytes = range(
        ctx,
        "cache_bytes",
        p.cache_bytes,
        0,
        16 * 1024 * 1024 * 1024,
    ) as usize;
    let jpeg_quality = range(ctx, "jpeg_quality", p.jpeg_quality, 30, 100) as u8;
    let fallback = match p.fallback.as_str() {
        "503" => crate::Fallback::Unavailable,
        "degraded" => crate::Fallback::Degraded,
        other => {
            ctx.err(
                &pp.key("fallback"),
                format!("{other:?} is not \"503\" or \"degraded\""),
            );
            crate::Fallback::Unavailable
        }
    };
    // Required later when a site can cloak; see `require_secret`.
    let secret = read_secret(
        ctx,
        &pp,
        "protector",
        p.secret.as_deref(),
        p.secret_file.as_deref(),
    );
    if p.variant_suffix.is_empty() || p.variant_suffix.contains('/') {
        ctx.err(
            &pp.key("variant_suffix"),
            "must be a non-empty file-name suffix such as \".cloaked\"",
        );
    }
    let transform_timeout = ctx.duration(
        &pp.key("transform_timeout"),
        &p.transform_timeout,
        Duration::from_secs(300),
    );
    let builtin = |name: &str, variant: bool, max_side: Option<u32>| crate::Profile {
        name: name.to_string(),
        variant,
        max_side,
        visible_mark: p.visible_mark,
        watermark: true,
    };
    let mut profiles = BTreeMap::new();
    profiles.insert("watermark".to_string(), builtin("watermark", false, None));
    profiles.insert(
        "preview".to_string(),
        builtin("preview", false, Some(preview_max_side)),
    );
    profiles.insert(
        "cloak".to_string(),
        builtin("cloak", true, Some(preview_max_side)),
    );
    for (name, rp) in raw_profiles {
        let path = KeyPath::root().key("profile").key(name);
        let max_side = match rp.max_side {
            None => None,
            Some(v) if (16..=16384).contains(&v) => Some(v as u32),
            Some(v) => {
                ctx.err(
                    &path.key("max_side"),
                    format!("{v} is out of range (16 to 16384)"),
                );
                None
            }
        };
        if !rp.watermark && max_side.is_none() && !rp.variant {
            ctx.err(&path, "does nothing: enable watermark, max_side or variant");
        }
        profiles.insert(
            name.clone(),
            crate::Profile {
                name: name.clone(),
                variant: rp.variant,
                max_side,
                visible_mark: rp.visible_mark,
                watermark: rp.watermark,
            },
        );
    }
    let profile = match profiles.get(&p.profile) {
        Some(pr) => pr.clone(),
        None => {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            ctx.err(
                &pp.key("profile"),
                format!(
                    "unknown profile {:?} (known: {})",
                    p.profile,
                    known.join(", ")
                ),
            );
            builtin("cloak", true, Some(preview_max_side))
        }
    };
    let c2pa = match (&p.c2pa_cert, &p.c2pa_key) {
        (None, None) => None,
        (Some(_), None) => {
            ctx.err(
                &pp.key("c2pa_key"),
                "c2pa_cert is set: give its private key too",
            );
            None
        }
        (None, Some(_)) => {
            ctx.err(
                &pp.key("c2pa_cert"),
                "c2pa_key is set: give its certificate chain too",
            );
            None
        }
        (Some(c), Some(k)) => {
            let mut ok = true;
            let mut file = |key: &str, f: &str| {
                let pb = ctx.resolve_path(f);
                if !pb.is_file() {
                    ctx.err(
                        &pp.key(key),
                        format!("{} is not a readable file", pb.display()),
                    );
                    ok = false;
                }
                pb
            };
            let cert = file("c2pa_cert", c);
            let key = file("c2pa_key", k);
            if !crate::C2PA_ALGS.contains(&p.c2pa_alg.as_str()) {
                ctx.err(
                    &pp.key("c2pa_alg"),
                    format!(
                        "{:?} is not one of {}",
                        p.c2pa_alg,
                        crate::C2PA_ALGS.join(", ")
                    ),
                );
                ok = false;
            }
            ok.then(|| crate::C2paCredential {
                cert,
                key,
                alg: p.c2pa_alg.clone(),
            })
        }
    };
    crate::Protector {
        c2pa,
        profile,
        profiles,
        preview_max_side,
        visible_mark: p.visible_mark,
        workers,
        queue,
        max_input_bytes,
        cache_bytes,
        fallback,
        secret,
        secret_generated: false,
        variant_suffix: p.variant_suffix.clone(),
        jpeg_quality,
        transform_timeout,
    }
}

fn validate(ctx: &mut Ctx<'_>, raw: RawConfig, source_name: &str) -> Config {
    let root = KeyPath::root();
    let mut policies = builtin_policies();
    crate::policy::validate_policies(ctx, &raw.policy, &mut policies);
    let detection = crate::policy::validate_detection(ctx, &raw.detection);
    let protector = validate_protector(ctx, &raw.protector, &raw.profile);
    let challenge = crate::challenge::validate_challenge(ctx, &raw.challenge);
    let tarpit = crate::challenge::validate_tarpit(ctx, &raw.tarpit);
    let state = crate::state::validate_state(ctx, &raw.state);
    let evidence = crate::evidence::validate_evidence(ctx, &raw.evidence);
    let sp = root.key("server");
    let rs = raw.server;

    // Every socket the process binds, to catch clashes.
    let mut bound: Vec<(SocketAddr, KeyPath)> = Vec::new();

    let mut listen = Vec::new();
    if rs.listen.is_empty() && rs.tls.is_none() {
        ctx.err(
            &sp.key("listen"),
            "no listener: give at least one address or a [server.tls] listener",
        );
    }
    for (i, l) in rs.listen.iter().enumerate() {
        let p = sp.key("listen").index(i);
        if let Some(a) = ctx.addr(&p, l) {
            listen.push(a);
            bound.push((a, p));
        }
    }

    let tls = rs.tls.as_ref().and_then(|t| {
        let tp = sp.key("tls");
        let addr = ctx.addr(&tp.key("listen"), &t.listen);
        if let Some(a) = addr {
            bound.push((a, tp.key("listen")));
        }
        let cert = ctx.resolve_path(&t.cert);
        let key = ctx.resolve_path(&t.key);
        check_pem_pair(ctx, &tp, &cert, &key);
        addr.map(|listen| Tls { listen, cert, key })
    });

    let admin = ctx
        .addr(&sp.key("admin"), &rs.admin)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    bound.push((admin, sp.key("admin")));

    let threads = if (1..=1024).contains(&rs.threads) {
        rs.threads as usize
    } else {
        ctx.err(
            &sp.key("threads"),
            format!("{} is out of range (1 to 1024)", rs.threads),
        );
        1
    };

    let hour = Duration::from_secs(3600);
    let grace_period = ctx.duration(&sp.key("grace_period"), &rs.grace_period, hour);
    let upstream_connect_timeout = ctx.duration(
        &sp.key("upstream_connect_timeout"),
        &rs.upstream_connect_timeout,
        hour,
    );
    let upstream_read_timeout = ctx.duration(
        &sp.key("upstream_read_timeout"),
        &rs.upstream_read_timeout,
        hour,
    );
    let health_check_interval = ctx.duration(
        &sp.key("health_check_interval"),
        &rs.health_check_interval,
        hour,
    );
    for (key, d) in [
        ("upstream_connect_timeout", upstream_connect_timeout),
        ("upstream_read_timeout", upstream_read_timeout),
        ("health_check_interval", health_check_interval),
    ] {
        if d.is_zero() && !ctx.problems.iter().any(|p| p.path.ends_with(key)) {
            ctx.err(&sp.key(key), "must be greater than zero");
        }
    }

    let limits = validate_limits(ctx, &rs.limits, &sp.key("limits"));

    let mut trusted_proxies = Vec::new();
    for (i, t) in rs.trusted_proxies.iter().enumerate() {
        let p = sp.key("trusted_proxies").index(i);
        match t.parse::<IpNet>() {
            Ok(n) => trusted_proxies.push(n.trunc()),
            Err(_) => match t.parse::<IpAddr>() {
                Ok(ip) => trusted_proxies.push(IpNet::from(ip)),
                Err(_) => ctx.err(
                    &p,
                    format!("{t:?} is not an IP address or CIDR (e.g. \"10.0.0.0/8\")"),
                ),
            },
        }
    }

    let access = match raw.log.access.as_str() {
        "stdout" | "-" => AccessLog::Stdout,
        "off" | "none" => AccessLog::Off,
        "" => {
            ctx.err(
                &root.key("log").key("access"),
                "is empty: use \"stdout\", \"off\" or a file path",
            );
            AccessLog::Off
        }
        p => AccessLog::File(ctx.resolve_path(p)),
    };

    let demo = raw.demo.as_ref().and_then(|d| {
        let p = root.key("demo").key("listen");
        let a = ctx.addr(&p, &d.listen)?;
        if !a.ip().is_loopback() {
            ctx.err(
                &p,
                format!("{a} is not a loopback address; the demo origin listens on loopback only"),
            );
            return None;
        }
        bound.push((a, p));
        Some(Demo { listen: a })
    });

    // Duplicate binds.
    for i in 0..bound.len() {
        for j in 0..i {
            let (a, pa) = &bound[i];
            let (b, pb) = &bound[j];
            if a == b && a.port() != 0 {
                let msg = format!("{a} is already used by {pb}");
                ctx.err(&pa.clone(), msg);
            }
        }
    }

    // Sites.
    let mut sites = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut host_owner: HashMap<HostPattern, usize> = HashMap::new();
    let mut default_site = None;
    if raw.site.is_empty() {
        ctx.err(
            &root.key("site"),
            "no [[site]] defined: Fixative needs at least one site",
        );
    }
    for (i, s) in raw.site.iter().enumerate() {
        let p = root.key("site").index(i);
        let name = s.name.trim().to_string();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            ctx.err(
                &p.key("name"),
                format!("{name:?} is not a valid site name (letters, digits, '-', '_', '.')"),
            );
        } else if let Some(prev) = names.insert(name.clone(), i) {
            ctx.err(
                &p.key("name"),
                format!("{name:?} is already the name of site[{prev}]"),
            );
        }

        let mut hosts = Vec::new();
        for (j, h) in s.hosts.iter().enumerate() {
            let hp = p.key("hosts").index(j);
            match parse_host_pattern(h) {
                Ok(pat) => {
                    if let Some(prev) = host_owner.insert(pat.clone(), i) {
                        ctx.err(&hp, format!("{h:?} is already a host of site[{prev}]"));
                    }
                    hosts.push(pat);
                }
                Err(msg) => ctx.err(&hp, format!("{h:?} {msg}")),
            }
        }
        if s.hosts.is_empty() && !s.default {
            ctx.err(
                &p.key("hosts"),
                "no hosts: give at least one host, or mark the site `default = true`",
            );
        }

        let mut upstreams = Vec::new();
        if s.upstreams.is_empty() {
            ctx.err(
                &p.key("upstreams"),
                "no upstreams: give at least one \"host:port\"",
            );
        }
        for (j, u) in s.upstreams.iter().enumerate() {
            let up = p.key("upstreams").index(j);
            if u.contains("://") {
                ctx.err(
                    &up,
                    format!(
                        "{u:?} must be \"host:port\" without a scheme; use upstream_tls for HTTPS origins"
                    ),
                );
                continue;
            }
            if let Some(addr) = ctx.addr(&up, u) {
                upstreams.push(Upstream {
                    spec: u.clone(),
                    addr,
                });
            }
        }

        let upstream_tls = s.upstream_tls.as_ref().and_then(|t| {
            if t.sni.trim().is_empty() {
                ctx.err(&p.key("upstream_tls").key("sni"), "is empty");
                None
            } else {
                Some(UpstreamTls {
                    sni: t.sni.trim().to_string(),
                    verify: t.verify,
                })
            }
        });

        if !policies.contains_key(&s.policy) {
            let known: Vec<&str> = policies.keys().map(String::as_str).collect();
            ctx.err(
                &p.key("policy"),
                format!(
                    "unknown policy {:?} (known: {})",
                    s.policy,
                    known.join(", ")
                ),
            );
        }

        if s.default {
            if let Some(prev) = default_site {
                ctx.err(
                    &p.key("default"),
                    format!("site[{prev}] is already the default site"),
                );
            } else {
                default_site = Some(i);
            }
        }

        let d = &s.directives;
        let dp = p.key("directives");
        let site_usage = {
            let base = crate::Usage::default();
            crate::Usage {
                train_ai: usage_value(
                    ctx,
                    &dp.key("train_ai"),
                    d.train_ai.as_deref(),
                    base.train_ai,
                ),
                search: usage_value(ctx, &dp.key("search"), d.search.as_deref(), base.search),
                ai_input: usage_value(
                    ctx,
                    &dp.key("ai_input"),
                    d.ai_input.as_deref(),
                    base.ai_input,
                ),
            }
        };
        let mut preferences: Vec<crate::Preference> = Vec::new();
        let mut seen_patterns: BTreeMap<String, usize> = BTreeMap::new();
        for (j, rp) in s.preference.iter().enumerate() {
            let pp = p.key("preference").index(j);
            let name = rp.name.clone().unwrap_or_default();
            if name.is_empty() {
                ctx.err(&pp.key("name"), "a preference needs a name (the access log, `explain` and an origin's preference header use it)");
            } else if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                ctx.err(
                    &pp.key("name"),
                    format!("{name:?} may use only letters, digits, '-', '_' and '.'"),
                );
            } else if name.eq_ignore_ascii_case("default") {
                ctx.err(
                    &pp.key("name"),
                    "\"default\" names the site's own preference; choose another name",
                );
            } else if preferences
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case(&name))
            {
                ctx.err(
                    &pp.key("name"),
                    format!("{name:?} is already the name of another preference"),
                );
            }
            for (k, pat) in rp.paths.iter().enumerate() {
                if let Some(why) = crate::preference::pattern_problem(pat) {
                    ctx.err(
                        &pp.key("paths").index(k),
                        format!(
                            "{pat:?} {why} (robots.txt path syntax: a prefix, * and a final $)"
                        ),
                    );
                } else if let Some(other) = seen_patterns.get(pat) {
                    ctx.err(&pp.key("paths").index(k), format!("{pat:?} is already a path of preference[{other}]; a path can have one preference"));
                } else {
                    seen_patterns.insert(pat.clone(), j);
                }
            }
            let usage = crate::Usage {
                train_ai: usage_value(
                    ctx,
                    &pp.key("train_ai"),
                    rp.train_ai.as_deref(),
                    site_usage.train_ai,
                ),
                search: usage_value(
                    ctx,
                    &pp.key("search"),
                    rp.search.as_deref(),
                    site_usage.search,
                ),
                ai_input: usage_value(
                    ctx,
                    &pp.key("ai_input"),
                    rp.ai_input.as_deref(),
                    site_usage.ai_input,
                ),
            };
            if rp.paths.is_empty() && d.preference_header.is_none() {
                ctx.err(&pp.key("paths"), "a preference needs paths, or directives.preference_header so that the origin can name it");
            }
            preferences.push(crate::Preference {
                name,
                paths: rp.paths.clone(),
                usage,
            });
        }
        if d.c2pa && protector.c2pa.is_none() {
            ctx.err(
                &dp.key("c2pa"),
                "signing images needs a credential: set protector.c2pa_cert and protector.c2pa_key",
            );
        }
        let preference_header = d.preference_header.as_ref().and_then(|h| {
            let lower = h.to_ascii_lowercase();
            if http_token(&lower) {
                Some(lower)
            } else {
                ctx.err(
                    &dp.key("preference_header"),
                    format!("{h:?} is not a header name"),
                );
                None
            }
        });
        let x_robots_tag = d
            .x_robots_tag
            .clone()
            .unwrap_or_else(|| site_usage.robots_tokens());
        for (j, v) in x_robots_tag.iter().enumerate() {
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                ctx.err(
                    &dp.key("x_robots_tag").index(j),
                    format!("{v:?} is not a robots directive token"),
                );
            }
        }
        for (j, c) in d.robots_categories.iter().enumerate() {
            if !crate::policy::CATEGORIES.contains(&c.as_str()) {
                ctx.err(
                    &dp.key("robots_categories").index(j),
                    format!("unknown category {c:?}"),
                );
            }
        }
        if let Some(u) = &d.tdm_policy
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            ctx.err(
                &dp.key("tdm_policy"),
                format!("{u:?} must be an absolute http(s) URL"),
            );
        }
        let content_usage = d
            .content_usage
            .clone()
            .unwrap_or_else(|| site_usage.content_usage());
        let content_signal = d
            .content_signal
            .clone()
            .unwrap_or_else(|| site_usage.content_signal());
        let data_mining = d
            .data_mining
            .clone()
            .unwrap_or_else(|| site_usage.data_mining().to_string());
        for (key, v) in [
            ("content_usage", &content_usage),
            ("content_signal", &content_signal),
        ] {
            if v.bytes().any(|b| b.is_ascii_control()) {
                ctx.err(&dp.key(key), "must be a single line");
            }
        }
        let image_metadata = match d.image_metadata.as_str() {
            "all" => crate::ImageMetadata::All,
            "non-allowed" => crate::ImageMetadata::NonAllowed,
            "off" => crate::ImageMetadata::Off,
            other => {
                ctx.err(
                    &dp.key("image_metadata"),
                    format!("{other:?} is not one of \"all\", \"non-allowed\", \"off\""),
                );
                crate::ImageMetadata::Off
            }
        };
        if !crate::DMI_VALUES.contains(&data_mining.as_str()) {
            ctx.err(
                &dp.key("data_mining"),
                format!(
                    "{:?} is not a PLUS DataMining term ({})",
                    data_mining,
                    crate::DMI_VALUES.join(", ")
                ),
            );
        }
        if !(1024..=512 * 1024 * 1024).contains(&d.image_metadata_max_bytes) {
            ctx.err(
                &dp.key("image_metadata_max_bytes"),
                format!(
                    "{} is out of range (1024 to 536870912)",
                    d.image_metadata_max_bytes
                ),
            );
        }
        let cache_ttl = ctx.duration(
            &dp.key("cache_ttl"),
            &d.cache_ttl,
            std::time::Duration::from_secs(86_400),
        );
        let max_body_bytes = match s.max_body_bytes {
            None => None,
            Some(n) if n >= 1 => Some(n as u64),
            Some(n) => {
                ctx.err(
                    &p.key("max_body_bytes"),
                    format!("{n} must be at least 1 (leave it out for no limit)"),
                );
                None
            }
        };
        sites.push(Site {
            name,
            hosts,
            upstreams,
            upstream_tls,
            policy: s.policy.clone(),
            default: s.default,
            max_body_bytes,
            directives: crate::Directives {
                usage: site_usage,
                preferences,
                preference_header,
                rsl: d.rsl,
                c2pa: d.c2pa,
                x_robots_tag,
                tdm_reservation: d.tdm_reservation,
                tdm_policy: d.tdm_policy.clone(),
                content_usage: content_usage.trim().to_string(),
                robots_txt: d.robots_txt,
                robots_categories: d.robots_categories.clone(),
                content_signal: content_signal.trim().to_string(),
                tdmrep_json: d.tdmrep_json,
                ai_txt: d.ai_txt,
                cache_ttl,
                html_meta: d.html_meta,
                trap_link: d.trap_link,
                image_metadata,
                data_mining,
                image_metadata_max_bytes: d.image_metadata_max_bytes.clamp(1024, 512 * 1024 * 1024)
                    as usize,
            },
        });
    }

    let mut cfg = Config {
        source_name: source_name.to_string(),
        path: None,
        server: Server {
            listen,
            tls,
            admin,
            threads,
            grace_period,
            trusted_proxies,
            upstream_connect_timeout,
            upstream_read_timeout,
            health_check_interval,
            debug_headers: rs.debug_headers,
            limits,
        },
        log: Log { access },
        sites,
        default_site,
        demo,
        policies,
        detection,
        protector,
        challenge,
        tarpit,
        state,
        evidence,
    };
    require_secret(ctx, &mut cfg, &root.key("protector").key("secret"));
    cfg
}

/// `allow` / `deny` (absent: `default`).
fn usage_value(ctx: &mut Ctx, path: &KeyPath, v: Option<&str>, default: bool) -> bool {
    match v {
        None => default,
        Some("allow") => true,
        Some("deny") => false,
        Some(other) => {
            ctx.err(path, format!("{other:?} is not \"allow\" or \"deny\""));
            default
        }
    }
}

/// An HTTP field name (RFC 9110 token).
fn http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use crate::{Config, HostPattern};

    fn problems(src: &str) -> Vec<String> {
        match Config::from_toml(src, "t.toml", None) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().unwrap();
        assert!(c.demo.is_some());
        assert_eq!(c.default_site, Some(0));
    }

    #[test]
    fn reports_every_problem_with_path_and_line() {
        let src = r#"
[server]
listen = ["0.0.0.0:8080", "nope"]
grace_period = "soon"
trusted_proxies = ["10.0.0.0/8", "banana"]

[[site]]
name = "gallery"
hosts = ["gallery.example", "*.gallery.example"]
upstreams = ["127.0.0.1:3000"]

[[site]]
name = "gallery"
hosts = ["gallery.example:80", "gallery.example"]
upstreams = ["127.0.0.1:3001", "10.0.0.5"]
policy = "strict"

[protector]
secret = "unit-test-watermark-key-0123"
"#;
        let p = problems(src);
        let expect = [
            "server.listen[1]: \"nope\" has no port (line 3)",
            "server.grace_period: \"soon\" is not a duration",
            "server.trusted_proxies[1]: \"banana\" is not an IP address or CIDR (e.g. \"10.0.0.0/8\") (line 5)",
            "site[1].name: \"gallery\" is already the name of site[0] (line 13)",
            "site[1].hosts[0]: \"gallery.example:80\" must not contain a port (hosts match without the port) (line 14)",
            "site[1].hosts[1]: \"gallery.example\" is already a host of site[0] (line 14)",
            "site[1].upstreams[1]: \"10.0.0.5\" has no port (line 15)",
            "site[1].policy: unknown policy \"strict\"",
        ];
        for e in expect {
            assert!(
                p.iter().any(|x| x.starts_with(e)),
                "missing {e:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn unknown_keys_name_path_and_line() {
        let src = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\nupstream = \"x\"\n";
        let p = problems(src);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("site[0].upstream: unknown field `upstream`"),
            "{p:?}"
        );
        assert!(p[0].ends_with("(line 8)"), "{p:?}");
    }

    #[test]
    fn bad_tls_files_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "not a cert").unwrap();
        let src = "[server]\ntls = { listen = \"127.0.0.1:8443\", cert = \"cert.pem\", key = \"missing.pem\" }\n[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\n";
        let e = Config::from_toml(src, "t.toml", Some(dir.path())).unwrap_err();
        let p: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            p[0].starts_with("server.tls.cert: ") && p[0].contains("holds no PEM certificate"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("server.tls.key: cannot read private key")
                && p[1].contains("missing.pem"),
            "{p:?}"
        );
    }

    #[test]
    fn valid_tls_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("c.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), ck.signing_key.serialize_pem()).unwrap();
        let src = "[server]\ntls = { listen = \"127.0.0.1:8443\", cert = \"c.pem\", key = \"k.pem\" }\n[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\npolicy = \"off\"\n";
        let c = Config::from_toml(src, "t.toml", Some(dir.path())).unwrap();
        assert_eq!(c.server.tls.unwrap().cert, dir.path().join("c.pem"));
    }

    #[test]
    fn builtin_policies_are_valid_and_user_policies_are_checked() {
        let (b, builtin_problems) = super::builtin_policies_checked();
        assert!(builtin_problems.is_empty(), "{builtin_problems:?}");
        assert!(b["default"].rules.len() >= 5);
        assert_eq!(b["observe"].mode, crate::Mode::Observe);
        let src = "[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\npolicy = \"strict\"\n\n[policy.strict]\n[[policy.strict.rule]]\nname = \"x\"\nmatch = { category = [\"ai-trainers\"], ua_regex = \"(\" }\naction = \"limit\"\n\n[[policy.strict.rule]]\nname = \"y\"\naction = \"limit\"\nquota = { rate = 5, per = \"fortnight\" }\n";
        let p = problems(src);
        assert!(
            p.iter().any(|x| x.starts_with(
                "policy.strict.rule[0].match.category[0]: unknown category \"ai-trainers\""
            ) && x.ends_with("(line 10)")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("policy.strict.rule[0].match.ua_regex: invalid regex")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("policy.strict.rule[0].action: \"limit\" needs a quota")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|x| x
                    .starts_with("policy.strict.rule[1].quota.per: \"fortnight\" is not a period")),
            "{p:#?}"
        );
        assert_eq!(p.len(), 4, "{p:#?}");
    }

    #[test]
    fn protector_profiles_built_in_and_configured() {
        let base = "[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\npolicy = \"off\"\n";
        let c = Config::from_toml(base, "t", None).unwrap();
        assert_eq!(c.protector.profile.name, "cloak");
        assert!(c.protector.profile.variant);
        assert_eq!(c.protector.profiles["watermark"].max_side, None);
        let src = format!(
            "{base}[protector]\nprofile = \"thumb\"\n[profile.thumb]\nmax_side = 256\nwatermark = false\n"
        );
        let c = Config::from_toml(&src, "t", None).unwrap();
        assert_eq!(c.protector.profile.max_side, Some(256));
        assert!(!c.protector.profile.watermark);
        let p = problems(&format!("{base}[protector]\nprofile = \"nope\"\n"));
        assert!(
            p[0].starts_with("protector.profile: unknown profile \"nope\""),
            "{p:?}"
        );
    }

    #[test]
    fn host_patterns() {
        let w = HostPattern::Wildcard(".gallery.example".into());
        assert!(w.matches("a.gallery.example"));
        assert!(w.matches("a.b.gallery.example"));
        assert!(!w.matches("gallery.example"));
        assert!(!w.matches("xgallery.example"));
    }

    #[test]
    fn duplicate_listeners_are_rejected() {
        let src = "[server]\nlisten = [\"127.0.0.1:7000\"]\nadmin = \"127.0.0.1:7000\"\n[[site]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:2\"]\npolicy = \"off\"\n";
        let p = problems(src);
        assert_eq!(
            p,
            vec!["server.admin: 127.0.0.1:7000 is already used by server.listen[0] (line 3)"]
        );
    }

    mod fuzz {
        //! The loader never panics: mutated versions of the shipped default
        //! and random TOML get a configuration or errors.
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            // Each case loads a whole configuration: fewer by default.
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(64),
                ..ProptestConfig::default()
            })]
            #[test]
            fn mutated_configurations_never_panic(
                cut in any::<prop::sample::Index>(),
                insert in "[ -~\\n]{0,40}",
                line in any::<prop::sample::Index>(),
            ) {
                let src = crate::DEFAULT_TOML;
                let lines: Vec<&str> = src.lines().collect();
                let at = line.index(lines.len());
                let mut mutated: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                mutated.insert(at, insert.clone());
                let m = mutated.join("\n");
                let _ = load(&m, "fuzz.toml", None);
                // A cut inside a multi-byte character is not a string.
                if let Some(truncated) = src.get(..cut.index(src.len())) {
                    let _ = load(truncated, "fuzz.toml", None);
                }
            }

            #[test]
            fn random_tables_never_panic(
                key in "[a-z_]{1,20}",
                value in prop_oneof![
                    any::<i64>().prop_map(|v| v.to_string()),
                    "\"[ -~]{0,30}\"".prop_map(|v| v.replace('\\', "")),
                    Just("[]".to_string()),
                    Just("{}".to_string()),
                    Just("-1".to_string()),
                    Just("1e999".to_string()),
                ],
                table in prop_oneof![
                    Just("server"), Just("server.limits"), Just("detection"),
                    Just("protector"), Just("log"), Just("demo"),
                ],
            ) {
                let src = format!("[{table}]\n{key} = {value}\n[[site]]\nname = \"a\"\nupstreams = [\"127.0.0.1:1\"]\n");
                let _ = load(&src, "fuzz.toml", None);
            }
        }
    }
}
