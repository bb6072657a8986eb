//! Host routing: which site answers a request. One implementation for
//! the proxy, `fixative explain` and `fixative replay`, so that all three
//! pick the same site and policy.

use std::collections::HashMap;

use crate::{Config, HostPattern};

/// Maps a request's host to a site.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, usize>,
    /// (suffix starting with '.', site), longest suffix first.
    wildcards: Vec<(String, usize)>,
    default: Option<usize>,
}

impl Router {
    /// Builds the table from the configuration.
    pub fn new(config: &Config) -> Router {
        let mut r = Router {
            default: config.default_site,
            ..Router::default()
        };
        for (i, site) in config.sites.iter().enumerate() {
            for h in &site.hosts {
                match h {
                    HostPattern::Exact(h) => {
                        r.exact.insert(h.clone(), i);
                    }
                    HostPattern::Wildcard(suffix) => r.wildcards.push((suffix.clone(), i)),
                }
            }
        }
        r.wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        r
    }

    /// The site for `host` (lower-case, no port): exact, then the most
    /// specific wildcard, then the default site.
    pub fn route(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        for (suffix, i) in &self.wildcards {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(*i);
            }
        }
        self.default
    }
}

/// Normalises a Host header or `:authority`: lower-case, no port, no
/// trailing dot. Returns `None` for an empty or malformed value.
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        &rest[..end]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcards_and_the_longest_wildcard_wins_over_file_order() {
        let cfg = Config::from_toml(
            r#"
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[[site]]
name = "wide"
hosts = ["*.example.com"]
upstreams = ["127.0.0.1:1"]
policy = "off"
[[site]]
name = "narrow"
hosts = ["*.art.example.com"]
upstreams = ["127.0.0.1:2"]
policy = "off"
[[site]]
name = "exact"
hosts = ["mara.art.example.com"]
upstreams = ["127.0.0.1:3"]
policy = "off"
default = true
"#,
            "t.toml",
            None,
        )
        .unwrap();
        let r = Router::new(&cfg);
        let name = |h: &str| r.route(h).map(|i| cfg.sites[i].name.as_str());
        assert_eq!(name("mara.art.example.com"), Some("exact"));
        assert_eq!(name("jo.art.example.com"), Some("narrow"));
        assert_eq!(name("shop.example.com"), Some("wide"));
        assert_eq!(name("other.test"), Some("exact"));
        assert_eq!(
            normalize_host("Mara.Art.Example.com.:8443").as_deref(),
            Some("mara.art.example.com")
        );
    }
}
