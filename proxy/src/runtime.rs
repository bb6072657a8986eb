//! A configuration made ready to serve: routing table, balancers, engine.
//!
//! One [`Runtime`] is built per (re)load and swapped in atomically; each
//! request holds an `Arc` to the runtime it started on, so in-flight
//! requests finish on the old configuration after a reload.

use std::collections::HashMap;
use std::sync::Arc;

use fixative_config::Config;
use fixative_rules::Engine;
use pingora::lb::LoadBalancer;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;

/// One site, ready to serve.
pub struct SiteRuntime {
    /// Name from the configuration (a metrics label).
    pub name: String,
    /// Round-robin balancer over the site's upstreams.
    pub balancer: Arc<LoadBalancer<RoundRobin>>,
    /// Whether health checks run (more than one upstream).
    pub health_checked: bool,
    /// The peer of a site with one upstream, built once: every request
    /// goes there (health checks do not run for one upstream), so it is
    /// cloned instead of selected and built per request.
    pub peer: Option<pingora::upstreams::peer::HttpPeer>,
    /// Its per-request metric handles.
    pub metrics: crate::metrics::SiteMetrics,
    /// SNI for HTTPS origins.
    pub tls_sni: Option<String>,
    /// Verify the origin's certificate.
    pub tls_verify: bool,
    /// Detection policy name.
    pub policy: String,
    /// Largest request body accepted (413 past it).
    pub max_body_bytes: Option<u64>,
    /// No-train directives.
    pub directives: fixative_config::Directives,
    /// Their header values, built once.
    pub prepared: crate::directives::Prepared,
    /// The directives of each `[[site.preference]]` and their header
    /// values, indexed like `directives.preferences`.
    pub preferences: Vec<(fixative_config::Directives, crate::directives::Prepared)>,
    /// Generated robots.txt groups.
    pub robots_groups: String,
    /// Generated `tdmrep.json`, `ai.txt` and `license.xml` (served when
    /// the origin has none), built once per configuration.
    pub tdmrep: String,
    /// See `tdmrep`.
    pub ai_txt: String,
    /// See `tdmrep`.
    pub license_xml: String,
    /// Origin well-known documents, cached; the lock also makes concurrent
    /// refreshes wait for one fetch.
    pub docs:
        tokio::sync::Mutex<HashMap<crate::directives::WellKnown, crate::directives::OriginDoc>>,
}

impl SiteRuntime {
    /// The directives of preference `pref` (`None`: the site's default)
    /// and their prepared header values.
    pub fn variant(
        &self,
        pref: Option<usize>,
    ) -> (&fixative_config::Directives, &crate::directives::Prepared) {
        match pref.and_then(|i| self.preferences.get(i)) {
            Some((d, p)) => (d, p),
            None => (&self.directives, &self.prepared),
        }
    }
}

pub use fixative_config::router::{Router, normalize_host};

/// Everything a request needs from one configuration generation.
pub struct Runtime {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Host routing.
    pub router: Router,
    /// Sites, indexed like `config.sites`.
    pub sites: Vec<SiteRuntime>,
    /// The detection engine (its per-client state lives as long as this
    /// configuration generation).
    pub engine: Engine,
    /// Monotonic epoch for the engine's clock.
    pub epoch: std::time::Instant,
    /// Reverse-DNS suffixes of the catalog.
    pub rdns_suffixes: Arc<Vec<String>>,
    /// Protected image variants for cloak verdicts.
    pub cloaker: crate::cloak::Cloaker,
    /// Fixative's own HTTP client to origins (well-known files, images to
    /// protect); built once, since it holds the TLS context and pool.
    pub connector: pingora::connectors::http::Connector,
}

impl Runtime {
    /// Builds a runtime; fails only on resources that cannot be created.
    pub fn build(
        config: Config,
        metrics: Arc<crate::metrics::Metrics>,
        fleet: Arc<fixative_rules::fleet::Fleet>,
        bot_auth: Option<Arc<fixative_rules::botauth::Directory>>,
    ) -> Result<Runtime, String> {
        let mut sites = Vec::with_capacity(config.sites.len());
        // The engine's trap path (`Engine::trap_path`), linked from pages.
        let trap_path = config.detection.trap_path.as_str();
        for site in &config.sites {
            let addrs: Vec<std::net::SocketAddr> = site.upstreams.iter().map(|u| u.addr).collect();
            let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs).map_err(|e| {
                format!("site {:?}: cannot build the upstream pool: {e}", site.name)
            })?;
            let health_checked = site.upstreams.len() > 1;
            if health_checked {
                let mut hc = TcpHealthCheck::new();
                hc.peer_template.options.connection_timeout =
                    Some(config.server.upstream_connect_timeout);
                if let Some(tls) = &site.upstream_tls {
                    hc.peer_template.sni = tls.sni.clone();
                }
                lb.set_health_check(hc);
            }
            let tls_sni = site.upstream_tls.as_ref().map(|t| t.sni.clone());
            let tls_verify = site.upstream_tls.as_ref().is_none_or(|t| t.verify);
            let peer = match site.upstreams.as_slice() {
                [only] => Some(crate::service::peer_for(
                    only.addr,
                    tls_sni.as_deref(),
                    tls_verify,
                    &config.server,
                )),
                _ => None,
            };
            sites.push(SiteRuntime {
                name: site.name.clone(),
                balancer: Arc::new(lb),
                health_checked,
                peer,
                metrics: crate::metrics::SiteMetrics::new(&metrics, &site.name),
                tls_sni,
                tls_verify,
                policy: site.policy.clone(),
                max_body_bytes: site.max_body_bytes,
                directives: site.directives.clone(),
                prepared: crate::directives::Prepared::new(&site.directives, trap_path),
                preferences: (0..site.directives.preferences.len())
                    .map(|i| {
                        let d = site.directives.variant(Some(i));
                        let p = crate::directives::Prepared::new(&d, trap_path);
                        (d, p)
                    })
                    .collect(),
                robots_groups: String::new(),
                tdmrep: crate::directives::tdmrep_json(&site.directives),
                ai_txt: crate::directives::ai_txt(&site.directives),
                license_xml: crate::directives::license_xml(&site.directives),
                docs: tokio::sync::Mutex::new(HashMap::new()),
            });
        }
        // The C2PA credential, checked now (a test signature): `check`
        // and a reload refuse one readers would reject.
        let c2pa_signer = match &config.protector.c2pa {
            None => None,
            Some(c) => {
                let read = |p: &std::path::Path, key: &str| {
                    std::fs::read(p).map_err(|e| format!("protector.{key}: {}: {e}", p.display()))
                };
                let chain = read(&c.cert, "c2pa_cert")?;
                let key = read(&c.key, "c2pa_key")?;
                let s =
                    fixative_protector::c2pa::Signer::from_pem(&chain, &key, &c.alg, "Fixative")
                        .map_err(|e| {
                            format!(
                                "protector.c2pa_cert / c2pa_key ({}, {}): {e}",
                                c.cert.display(),
                                c.key.display()
                            )
                        })?;
                Some(Arc::new(s))
            }
        };
        let mut engine = Engine::with_fleet(&config, fleet)
            .map_err(|e| config.error_at(&e.problems).to_string())?;
        // The signed agents' keys outlive a reload (fetched ones are not
        // fetched again); local directory files are read again.
        let wba = &config.detection.web_bot_auth;
        let problems = match bot_auth {
            Some(d) => {
                let p = d.reconfigure(wba, crate::challenge::unix_now());
                engine = engine.with_bot_auth(d);
                p
            }
            None => engine
                .bot_auth()
                .reconfigure(wba, crate::challenge::unix_now()),
        };
        for p in problems {
            tracing::warn!("Web Bot Auth key directory skipped: {p}");
        }
        for s in &mut sites {
            s.robots_groups = crate::directives::robots_groups(
                &s.directives,
                engine.catalog(),
                engine.trap_path(),
            );
        }
        Ok(Runtime {
            router: Router::new(&config),
            sites,
            rdns_suffixes: Arc::new(engine.rdns_suffixes()),
            cloaker: crate::cloak::Cloaker::new(config.protector.clone(), metrics, c2pa_signer),
            connector: pingora::connectors::http::Connector::new(None),
            engine,
            epoch: std::time::Instant::now(),
            config: Arc::new(config),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_host("Gallery.Example:8080").as_deref(),
            Some("gallery.example")
        );
        assert_eq!(
            normalize_host("gallery.example.").as_deref(),
            Some("gallery.example")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(normalize_host("bad host"), None);
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn routes_exact_then_wildcard_then_default() {
        let src = r#"
[[site]]
name = "a"
hosts = ["a.example", "*.a.example"]
upstreams = ["127.0.0.1:1"]
[[site]]
name = "b"
hosts = ["*.x.a.example"]
upstreams = ["127.0.0.1:2"]
default = true
[protector]
secret = "unit-test-watermark-key-0123"
"#;
        let c = Config::from_toml(src, "t", None).unwrap();
        let r = Router::new(&c);
        assert_eq!(r.route("a.example"), Some(0));
        assert_eq!(r.route("www.a.example"), Some(0));
        assert_eq!(r.route("y.x.a.example"), Some(1));
        assert_eq!(r.route("other.example"), Some(1));
    }

    /// A site with one upstream always gets that upstream's prebuilt peer,
    /// with the configured timeouts; a site with several goes through the
    /// balancer and gets the same timeouts on whichever it picks.
    #[test]
    fn peers_carry_the_upstream_and_the_timeouts() {
        let src = r#"
[server]
upstream_connect_timeout = "3s"
upstream_read_timeout = "7s"
[[site]]
name = "one"
hosts = ["one.example"]
upstreams = ["127.0.0.1:4001"]
default = true
[[site]]
name = "two"
hosts = ["two.example"]
upstreams = ["127.0.0.1:4002", "127.0.0.1:4003"]
[protector]
secret = "unit-test-watermark-key-0123"
"#;
        let c = Config::from_toml(src, "t", None).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
        let link = crate::fleet::FleetLink::start(&c, metrics.clone()).unwrap();
        let rt = Runtime::build(c, metrics, link.fleet.clone(), None).unwrap();
        assert!(rt.sites[0].peer.is_some());
        assert!(rt.sites[1].peer.is_none());
        let addr = |p: &pingora::upstreams::peer::HttpPeer| {
            use pingora::upstreams::peer::Peer;
            p.address().as_inet().map(|a| a.port())
        };
        for _ in 0..3 {
            let p = crate::service::site_peer(&rt, 0).unwrap();
            assert_eq!(addr(&p), Some(4001));
            assert_eq!(p.options.connection_timeout, Some(Duration::from_secs(3)));
            assert_eq!(p.options.read_timeout, Some(Duration::from_secs(7)));
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let p = crate::service::site_peer(&rt, 1).unwrap();
            assert_eq!(p.options.connection_timeout, Some(Duration::from_secs(3)));
            seen.extend(addr(&p));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![4002, 4003]);
        assert!(crate::service::site_peer(&rt, 2).is_err());
    }
}
