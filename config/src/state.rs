//! `[state]`: where per-client state lives (this node's memory, or a Redis
//! shared by a fleet of nodes).

use std::time::Duration;

use crate::challenge::in_range;
use crate::raw::RawState;
use crate::spans::KeyPath;
use crate::validate::Ctx;

/// Which store holds limits, penalties, bans and behaviour counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// This process only (the default): nothing is shared between nodes.
    Memory,
    /// A Redis 7 / Valkey server shared by every node of a fleet.
    Redis,
}

/// `[state]`: the state backend.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct State {
    /// The backend.
    pub backend: Backend,
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS).
    pub url: String,
    /// Password read from `password_file` (overrides one in the URL).
    pub password: Option<String>,
    /// For `rediss://`: the CA certificates (PEM, from `ca_file`) that
    /// sign the server's certificate, instead of the system's roots.
    pub ca_pem: Option<String>,
    /// Prefix of every key Fixative writes (several fleets can share a
    /// server).
    pub prefix: String,
    /// Multiplexed connections per node.
    pub pool_size: usize,
    /// Longest wait for a (re)connection.
    pub connect_timeout: Duration,
    /// Longest a request waits for a shared decision before the node
    /// decides alone.
    pub timeout: Duration,
    /// How often a node sends its counters and events and reads the
    /// fleet's.
    pub sync_interval: Duration,
    /// Bans held at once (the soonest to expire are dropped beyond).
    pub max_bans: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("backend", &self.backend)
            .field("url", &self.url_redacted())
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            backend: Backend::Memory,
            url: String::new(),
            password: None,
            ca_pem: None,
            prefix: "fixative:".into(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(5),
            sync_interval: Duration::from_millis(250),
            max_bans: 100_000,
        }
    }
}

impl State {
    /// Whether state is shared with other nodes.
    pub fn shared(&self) -> bool {
        self.backend == Backend::Redis
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn url_redacted(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        match rest.split_once('@') {
            Some((auth, host)) if auth.contains(':') => {
                let user = auth.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => self.url.clone(),
        }
    }
}

/// Validates `[state]`.
pub(crate) fn validate_state(ctx: &mut Ctx<'_>, s: &RawState) -> State {
    let p = KeyPath::root().key("state");
    let d = State::default();
    let backend = match s.backend.as_str() {
        "memory" => Backend::Memory,
        "redis" => Backend::Redis,
        other => {
            ctx.err(
                &p.key("backend"),
                format!("unknown backend {other:?} (expected \"memory\" or \"redis\")"),
            );
            Backend::Memory
        }
    };
    let url = s.url.clone().unwrap_or_default();
    if backend == Backend::Redis {
        if url.is_empty() {
            ctx.err(
                &p.key("url"),
                "backend \"redis\" needs a url, e.g. \"redis://127.0.0.1:6379\"",
            );
        } else if let Some(why) = url_problem(&url) {
            ctx.err(&p.key("url"), why);
        }
    }
    let password = match &s.password_file {
        None => None,
        Some(f) => {
            let path = ctx.resolve_path(f);
            match std::fs::read_to_string(&path) {
                Ok(pw) => Some(pw.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => {
                    ctx.err(
                        &p.key("password_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    };
    let ca_pem = match &s.ca_file {
        None => None,
        Some(f) => {
            let path = ctx.resolve_path(f);
            if !url.starts_with("rediss://") {
                ctx.err(&p.key("ca_file"), "only used with a rediss:// (TLS) url");
            }
            match std::fs::read_to_string(&path) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Some(pem),
                Ok(_) => {
                    ctx.err(
                        &p.key("ca_file"),
                        format!("{} holds no PEM certificate", path.display()),
                    );
                    None
                }
                Err(e) => {
                    ctx.err(
                        &p.key("ca_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    };
    if s.prefix.is_empty() || s.prefix.len() > 64 || s.prefix.chars().any(char::is_whitespace) {
        ctx.err(
            &p.key("prefix"),
            "must be 1 to 64 characters without spaces",
        );
    }
    let pool_size = in_range(ctx, &p.key("pool_size"), s.pool_size, 1, 64)
        .map(|v| v as usize)
        .unwrap_or(d.pool_size);
    let max_bans = in_range(ctx, &p.key("max_bans"), s.max_bans, 1, 10_000_000)
        .map(|v| v as usize)
        .unwrap_or(d.max_bans);
    let connect_timeout = ctx.duration(
        &p.key("connect_timeout"),
        &s.connect_timeout,
        Duration::from_secs(60),
    );
    let timeout = ctx.duration(&p.key("timeout"), &s.timeout, Duration::from_secs(1));
    if timeout < Duration::from_millis(1) && !ctx.has_problem_at(&p.key("timeout")) {
        ctx.err(&p.key("timeout"), "must be at least 1ms");
    }
    let sync_interval = ctx.duration(
        &p.key("sync_interval"),
        &s.sync_interval,
        Duration::from_secs(10),
    );
    if sync_interval < Duration::from_millis(10) && !ctx.has_problem_at(&p.key("sync_interval")) {
        ctx.err(&p.key("sync_interval"), "must be at least 10ms");
    }
    State {
        backend,
        url,
        password,
        ca_pem,
        prefix: s.prefix.clone(),
        pool_size,
        connect_timeout,
        timeout,
        sync_interval,
        max_bans,
    }
}

/// Why a Redis URL cannot be used, if it cannot.
fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("{url:?} is not a URL (redis://host:port)"));
    };
    if scheme != "redis" && scheme != "rediss" {
        return Some(format!(
            "scheme {scheme:?} is not supported (redis:// or rediss:// for TLS)"
        ));
    }
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host = host.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Some("the URL names no host".into());
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Some(format!("{port:?} is not a port"));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(extra: &str) -> Result<Config, String> {
        let base = "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\npolicy = \"off\"\n";
        Config::from_toml(&format!("{base}{extra}"), "t.toml", None).map_err(|e| e.to_string())
    }

    #[test]
    fn memory_is_the_default_and_redis_needs_a_url() {
        let c = load("").unwrap();
        assert!(!c.state.shared());
        assert_eq!(c.state.timeout, std::time::Duration::from_millis(5));
        let e = load("[state]\nbackend = \"redis\"\n").unwrap_err();
        assert!(e.contains("state.url") && e.contains("needs a url"), "{e}");
        let e = load("[state]\nbackend = \"redis\"\nurl = \"http://x:1\"\n").unwrap_err();
        assert!(e.contains("scheme \"http\""), "{e}");
        let e = load("[state]\nbackend = \"etcd\"\n").unwrap_err();
        assert!(e.contains("state.backend") && e.contains("line"), "{e}");
        let e = load("[state]\nbackend = \"redis\"\nurl = \"redis://h:99999\"\ntimeout = \"0s\"\npool_size = 0\n").unwrap_err();
        assert!(
            e.contains("not a port")
                && e.contains("state.timeout")
                && e.contains("state.pool_size"),
            "{e}"
        );
        let c = load("[state]\nbackend = \"redis\"\nurl = \"rediss://app:hunter2@redis.internal:6380/2\"\ntimeout = \"3ms\"\n").unwrap();
        assert!(c.state.shared());
        assert_eq!(
            c.state.url_redacted(),
            "rediss://app:***@redis.internal:6380/2"
        );
        assert!(!format!("{:?}", c.state).contains("hunter2"));
    }
}
