//! Web Bot Auth: verifying the HTTP Message Signatures (RFC 9421) that
//! signed agents put on their requests (`Signature-Agent`,
//! `Signature-Input`, `Signature`; draft-meunier-web-bot-auth-architecture).
//!
//! Parsing and the signature itself are Cloudflare's `web-bot-auth` crate
//! (Apache-2.0, RFC 9421 with Ed25519); this module adds what a verifier
//! at the edge must decide around it: whose keys (a bounded, least-recently
//! used [`Directory`] of agents' key directories, from local files or
//! fetched by the proxy in the background), whether the signature is fresh
//! (`created` / `expires`, a lifetime cap, a clock-skew allowance), whether
//! its nonce was seen before (a bounded replay cache), and whether it covers
//! what it must (`@authority` or `@target-uri`, and `signature-agent` when
//! one is sent: the crate's own rule).
//!
//! Pure and synchronous: no I/O here. A signature whose agent's keys are
//! not known yet is [`Check::Pending`]; the proxy fetches that directory
//! off the request path and later requests verify.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use web_bot_auth::components::{
    CoveredComponent, DerivedComponent, HTTPField, HTTPFieldParameters,
};
use web_bot_auth::keyring::{Algorithm, KeyRing, Thumbprintable};
use web_bot_auth::message_signatures::SignedMessage;
use web_bot_auth::{ImplementationError, SignatureAgentLink, WebBotAuthVerifier};

use crate::engine::HeaderLookup;

/// Where an agent publishes its keys.
pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";

/// The largest key directory read.
pub const MAX_DIRECTORY_BYTES: usize = 64 * 1024;

/// Keys kept per agent.
pub const MAX_KEYS_PER_AGENT: usize = 32;

/// A directory older than this is fetched again before a key it lacks is
/// called forged (the agent may have rotated its keys).
const ROTATION_GRACE_SECS: u64 = 300;

/// What a request's signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No Web Bot Auth signature (none, or one with another `tag`).
    Absent,
    /// Verified with a key of `agent`'s directory.
    Verified {
        /// The agent (host of its `Signature-Agent`, or of the directory
        /// that holds the key).
        agent: String,
        /// The key's JWK thumbprint.
        keyid: String,
    },
    /// Well-formed, but the agent's keys are not known (yet): the proxy
    /// fetches `agent`'s directory.
    Pending {
        /// Host of the `Signature-Agent`.
        agent: String,
    },
    /// Cannot be checked here (an algorithm other than Ed25519, an inline
    /// key directory that names no one, a component Fixative cannot
    /// reconstruct). No signal either way.
    Unverifiable(String),
    /// Does not verify: forged, altered, expired, replayed, or covering too
    /// little. A strong signal.
    Invalid(String),
}

/// The request as the signature's components see it.
pub struct Message<'a> {
    /// Request headers.
    pub header: &'a dyn HeaderLookup,
    /// Method.
    pub method: &'a str,
    /// `Host` / `:authority` as sent (port included).
    pub authority: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
}

fn sf_member(values: &[&str], key: &str) -> Option<String> {
    use sfv::SerializeValue;
    let joined = values.join(", ");
    let dict = sfv::Parser::new(&joined).parse_dictionary().ok()?;
    let entry = dict.into_iter().find(|(k, _)| k.as_str() == key)?.1;
    let one: sfv::List = vec![entry];
    one.serialize_value()
}

fn sf_strict(values: &[&str]) -> Option<String> {
    use sfv::SerializeValue;
    let joined = values.join(", ");
    if let Ok(d) = sfv::Parser::new(&joined).parse_dictionary() {
        return d.serialize_value();
    }
    if let Ok(l) = sfv::Parser::new(&joined).parse_list() {
        return l.serialize_value();
    }
    sfv::Parser::new(&joined)
        .parse_item()
        .ok()
        .map(|i| i.serialize_value())
}

impl SignedMessage for Message<'_> {
    fn lookup_component(&self, name: &CoveredComponent) -> Vec<String> {
        match name {
            CoveredComponent::HTTP(HTTPField { name, parameters }) => {
                let values = self.header.get_all(name);
                if values.is_empty() {
                    return Vec::new();
                }
                match parameters.0.as_slice() {
                    [] => values.iter().map(|v| v.trim().to_string()).collect(),
                    [HTTPFieldParameters::Key(k)] => sf_member(&values, k).into_iter().collect(),
                    [HTTPFieldParameters::Sf] => sf_strict(&values).into_iter().collect(),
                    _ => Vec::new(),
                }
            }
            CoveredComponent::Derived(d) => {
                let (path, query) = match self.path.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (self.path, None),
                };
                let path = if path.is_empty() { "/" } else { path };
                let v = match d {
                    DerivedComponent::Authority { req: false } => {
                        self.authority.to_ascii_lowercase()
                    }
                    DerivedComponent::Method { req: false } => self.method.to_string(),
                    DerivedComponent::Path { req: false } => path.to_string(),
                    DerivedComponent::Query { req: false } => format!("?{}", query.unwrap_or("")),
                    DerivedComponent::Scheme { req: false } => self.scheme.to_string(),
                    DerivedComponent::RequestTarget { req: false } => self.path.to_string(),
                    DerivedComponent::TargetUri { req: false } => format!(
                        "{}://{}{}",
                        self.scheme,
                        self.authority.to_ascii_lowercase(),
                        self.path
                    ),
                    _ => return Vec::new(),
                };
                vec![v]
            }
        }
    }
}

/// The host an agent URL names (`https://crawler.example/` →
/// `crawler.example`); `None` unless it is an `https://` URL.
pub fn agent_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let host = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then_some(host)
}

struct Agent {
    ring: KeyRing,
    keyids: Vec<String>,
    /// When the keys were loaded (Unix seconds).
    loaded: u64,
    /// From a local file (never fetched, never evicted).
    local: bool,
    last_used: u64,
}

struct Inner {
    agents: HashMap<String, Agent>,
    /// Key id → agent, over every known directory.
    by_keyid: HashMap<String, String>,
    /// Nonces of verified signatures and when each stops mattering.
    nonces: lru::LruCache<String, u64>,
}

/// Known agents' keys and the replay cache; shared by every configuration
/// generation of a process (the proxy keeps one).
pub struct Directory {
    cfg: Mutex<fixative_config::WebBotAuth>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("agents", &self.len())
            .finish()
    }
}

/// Parses a JWKS (a key directory body): the Ed25519 keys it holds, each
/// under its RFC 7638 thumbprint. Keys of other types are skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    if body.len() > MAX_DIRECTORY_BYTES {
        return Err(format!("larger than {MAX_DIRECTORY_BYTES} bytes"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no \"keys\" array (not a JWKS)")?;
    let mut out = Vec::new();
    for k in keys.iter().take(MAX_KEYS_PER_AGENT) {
        let Ok(jwk) = serde_json::from_value::<Thumbprintable>(k.clone()) else {
            continue;
        };
        if let (Ok(pk), Ok(Algorithm::Ed25519)) = (jwk.public_key(), jwk.algorithm()) {
            out.push((jwk.b64_thumbprint(), pk));
        }
    }
    if out.is_empty() {
        return Err("no Ed25519 key".into());
    }
    Ok(out)
}

impl Directory {
    /// An empty directory with these settings.
    pub fn new(cfg: &fixative_config::WebBotAuth) -> Directory {
        let nonces = std::num::NonZeroUsize::new(cfg.max_nonces.max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        Directory {
            cfg: Mutex::new(cfg.clone()),
            inner: Mutex::new(Inner {
                agents: HashMap::new(),
                by_keyid: HashMap::new(),
                nonces: lru::LruCache::new(nonces),
            }),
        }
    }

    /// Loads the local directory files of `cfg.directories_dir` (one JWKS
    /// per agent, named `<agent host>.json`); returns the problems (a file
    /// that does not parse is skipped, named).
    pub fn new_with_files(cfg: &fixative_config::WebBotAuth, now: u64) -> (Directory, Vec<String>) {
        let d = Directory::new(cfg);
        let problems = d.load_files(now);
        (d, problems)
    }

    /// Applies new settings (a reload) and reloads the local files.
    pub fn reconfigure(&self, cfg: &fixative_config::WebBotAuth, now: u64) -> Vec<String> {
        if let Ok(mut c) = self.cfg.lock() {
            *c = cfg.clone();
        }
        if let Ok(mut inner) = self.inner.lock() {
            let cap = std::num::NonZeroUsize::new(cfg.max_nonces.max(1))
                .unwrap_or(std::num::NonZeroUsize::MIN);
            inner.nonces.resize(cap);
            inner.agents.retain(|_, a| !a.local);
            let Inner {
                agents, by_keyid, ..
            } = &mut *inner;
            by_keyid.retain(|_, host| agents.contains_key(host));
        }
        self.load_files(now)
    }

    fn load_files(&self, now: u64) -> Vec<String> {
        let dir = match self.cfg.lock() {
            Ok(c) => c.directories_dir.clone(),
            Err(_) => None,
        };
        let Some(dir) = dir else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => return vec![format!("{}: {e}", dir.display())],
        };
        let mut paths: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for p in paths {
            let Some(host) = p
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_ascii_lowercase)
            else {
                continue;
            };
            let body = match std::fs::read(&p) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("{}: {e}", p.display()));
                    continue;
                }
            };
            if let Err(e) = self.insert(&host, &body, now, true) {
                problems.push(format!("{}: {e}", p.display()));
            }
        }
        problems
    }

    /// Stores `host`'s key directory (a JWKS body); `local` for files.
    /// Returns the number of Ed25519 keys.
    pub fn insert(&self, host: &str, body: &[u8], now: u64, local: bool) -> Result<usize, String> {
        let keys = parse_jwks(body)?;
        let max_agents = self.cfg.lock().map(|c| c.max_agents).unwrap_or(1024);
        let Ok(mut inner) = self.inner.lock() else {
            return Err("directory lock poisoned".into());
        };
        // A fetched directory never replaces the operator's local file.
        if !local && inner.agents.get(host).is_some_and(|a| a.local) {
            return Ok(0);
        }
        if !inner.agents.contains_key(host) && inner.agents.len() >= max_agents {
            // Least recently used fetched agent goes.
            let victim = inner
                .agents
                .iter()
                .filter(|(_, a)| !a.local)
                .min_by_key(|(_, a)| a.last_used)
                .map(|(h, _)| h.clone());
            match victim {
                Some(v) => {
                    inner.agents.remove(&v);
                    inner.by_keyid.retain(|_, h| *h != v);
                }
                None => return Err(format!("{max_agents} agents already (max_agents)")),
            }
        }
        let mut ring = KeyRing::default();
        let mut keyids = Vec::new();
        for (id, pk) in keys {
            if ring.import_raw(id.clone(), Algorithm::Ed25519, pk) {
                keyids.push(id);
            }
        }
        inner.by_keyid.retain(|_, h| h != host);
        for id in &keyids {
            inner.by_keyid.insert(id.clone(), host.to_string());
        }
        let n = keyids.len();
        inner.agents.insert(
            host.to_string(),
            Agent {
                ring,
                keyids,
                loaded: now,
                local,
                last_used: now,
            },
        );
        Ok(n)
    }

    /// Whether `host`'s directory should be fetched: unknown, or fetched
    /// longer ago than `refresh` (local files never are).
    pub fn needs_fetch(&self, host: &str, now: u64) -> bool {
        let (fetch, refresh) = match self.cfg.lock() {
            Ok(c) => (c.enabled && c.fetch, c.refresh.as_secs()),
            Err(_) => return false,
        };
        if !fetch {
            return false;
        }
        let Ok(inner) = self.inner.lock() else {
            return false;
        };
        match inner.agents.get(host) {
            None => true,
            Some(a) => !a.local && now.saturating_sub(a.loaded) >= refresh,
        }
    }

    /// Agents known: `(host, keys, loaded at, local)`.
    pub fn agents(&self) -> Vec<(String, usize, u64, bool)> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut v: Vec<_> = inner
            .agents
            .iter()
            .map(|(h, a)| (h.clone(), a.keyids.len(), a.loaded, a.local))
            .collect();
        v.sort();
        v
    }

    /// Number of agents known.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.agents.len()).unwrap_or(0)
    }

    /// Whether no agent is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nonces remembered.
    pub fn nonces(&self) -> usize {
        self.inner.lock().map(|i| i.nonces.len()).unwrap_or(0)
    }

    /// Checks the request's Web Bot Auth signature at `now` (Unix seconds).
    pub fn check(&self, m: &Message<'_>, now: u64) -> Check {
        let cfg = match self.cfg.lock() {
            Ok(c) => c.clone(),
            Err(_) => return Check::Absent,
        };
        if !cfg.enabled {
            return Check::Absent;
        }
        let inputs = m.header.get_all("signature-input");
        if inputs.is_empty() {
            return Check::Absent;
        }
        // Only signatures tagged for Web Bot Auth are ours to judge.
        if !inputs.iter().any(|i| i.contains("web-bot-auth")) {
            return Check::Absent;
        }
        let verifier = match WebBotAuthVerifier::parse(m) {
            Ok(v) => v,
            Err(ImplementationError::LookupError(c)) => {
                return Check::Invalid(format!("a covered component is missing: {c:?}"));
            }
            Err(e) => return Check::Invalid(format!("malformed: {e}")),
        };
        let details = verifier.get_parsed_label().base.parameters.details.clone();
        if details
            .algorithm
            .as_ref()
            .is_some_and(|a| *a != Algorithm::Ed25519)
        {
            return Check::Unverifiable(format!("algorithm {:?}", details.algorithm));
        }
        let (Some(created), Some(expires)) = (details.created, details.expires) else {
            return Check::Invalid("created and expires are required".into());
        };
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        if expires <= now_i {
            return Check::Invalid(format!("expired {}s ago", now_i - expires));
        }
        let skew = i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(i64::MAX);
        if created > now_i.saturating_add(skew) {
            return Check::Invalid(format!("created {}s in the future", created - now_i));
        }
        let lifetime = expires.saturating_sub(created);
        if lifetime < 0 || Duration::from_secs(lifetime as u64) > cfg.max_lifetime {
            return Check::Invalid(format!(
                "valid for {lifetime}s, longer than max_lifetime ({}s)",
                cfg.max_lifetime.as_secs()
            ));
        }
        let Some(keyid) = details.keyid.clone() else {
            return Check::Invalid("no keyid".into());
        };
        // Whose keys: the agent the request names, else whichever known
        // directory holds the key.
        let named = match verifier.get_signature_agents().first() {
            Some(SignatureAgentLink::External(url)) => match agent_host(url) {
                Some(h) => Some(h),
                None => {
                    return Check::Invalid(format!(
                        "Signature-Agent {url:?} is not an https:// URL"
                    ));
                }
            },
            Some(SignatureAgentLink::Inline(_)) => {
                return Check::Unverifiable(
                    "an inline key directory (a data: URL) names no one".into(),
                );
            }
            None => None,
        };
        if m.header.get("signature-agent").is_some() && named.is_none() {
            return Check::Invalid("Signature-Agent does not parse".into());
        }
        let Ok(mut inner) = self.inner.lock() else {
            return Check::Absent;
        };
        let host = match named {
            Some(h) => h,
            None => match inner.by_keyid.get(&keyid) {
                Some(h) => h.clone(),
                None => {
                    return Check::Unverifiable(format!(
                        "key {keyid} is in no known directory and no Signature-Agent names one"
                    ));
                }
            },
        };
        let Some(agent) = inner.agents.get_mut(&host) else {
            return Check::Pending { agent: host };
        };
        agent.last_used = now;
        if agent.ring.get(&keyid).is_none() {
            // A key the directory lacks: forged, unless the copy here is
            // old enough that the agent may have rotated since.
            if !agent.local && now.saturating_sub(agent.loaded) >= ROTATION_GRACE_SECS {
                agent.loaded = 0;
                return Check::Pending { agent: host };
            }
            return Check::Invalid(format!("key {keyid} is not in {host}'s directory"));
        }
        let replay_key = details.nonce.as_ref().map(|n| format!("{keyid} {n}"));
        if let Some(k) = &replay_key
            && inner.nonces.get(k).is_some_and(|until| *until > now)
        {
            return Check::Invalid("nonce seen before (replayed)".into());
        }
        let ring = match inner.agents.get(&host) {
            Some(a) => a.ring.clone(),
            None => return Check::Pending { agent: host },
        };
        // The signature itself (Ed25519, tens of microseconds) while the
        // lock is held would serialize verifications: release it.
        drop(inner);
        match verifier.verify(&ring, Some(keyid.clone())) {
            Ok(_) => {
                if let Some(k) = replay_key
                    && cfg.max_nonces > 0
                    && let Ok(mut inner) = self.inner.lock()
                {
                    let until = u64::try_from(expires).unwrap_or(u64::MAX);
                    // Checked again: two copies of one request may race.
                    if inner.nonces.get(&k).is_some_and(|u| *u > now) {
                        return Check::Invalid("nonce seen before (replayed)".into());
                    }
                    inner.nonces.put(k, until);
                }
                Check::Verified { agent: host, keyid }
            }
            Err(ImplementationError::FailedToVerify(_)) => {
                Check::Invalid("signature does not verify".into())
            }
            Err(ImplementationError::InvalidSignatureLength) => {
                Check::Invalid("signature has the wrong length".into())
            }
            Err(e) => Check::Invalid(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use web_bot_auth::message_signatures::{MessageSigner, UnsignedMessage};

    /// The RFC 9421 Ed25519 test key (B.1.4) as a JWKS, as the Web Bot Auth
    /// drafts use it: thumbprint `poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U`.
    const RFC_KEY_JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}]}"#;
    const RFC_KEYID: &str = "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";
    const RFC_SECRET: [u8; 32] = [
        0x9f, 0x83, 0x62, 0xf8, 0x7a, 0x48, 0x4a, 0x95, 0x4e, 0x6e, 0x74, 0x0c, 0x5b, 0x4c, 0x0e,
        0x84, 0x22, 0x91, 0x39, 0xa2, 0x0a, 0xa8, 0xab, 0x56, 0xff, 0x66, 0x58, 0x6f, 0x6a, 0x7d,
        0x29, 0xc5,
    ];
    /// draft-meunier-web-bot-auth-architecture, Appendix A (also the
    /// `web-bot-auth` crate's vector): `@authority` = example.com.
    const VECTOR_INPUT: &str = r#"sig1=("@authority");created=1735689600;keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";alg="ed25519";expires=1735693200;nonce="gubxywVx7hzbYKatLgzuKDllDAIXAkz41PydU7aOY7vT+Mb3GJNxW0qD4zJ+IOQ1NVtg+BNbTCRUMt1Ojr5BgA==";tag="web-bot-auth""#;
    const VECTOR_SIG: &str = "sig1=:uz2SAv+VIemw+Oo890bhYh6Xf5qZdLUgv6/PbiQfCFXcX/vt1A8Pf7OcgL2yUDUYXFtffNpkEr5W6dldqFrkDg==:";
    const VECTOR_TIME: u64 = 1_735_689_700;

    struct Headers(Vec<(String, String)>);
    impl HeaderLookup for Headers {
        fn get(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn get_all(&self, name: &str) -> Vec<&str> {
            self.0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        }
    }

    fn msg<'a>(h: &'a Headers, authority: &'a str) -> Message<'a> {
        Message {
            header: h,
            method: "GET",
            authority,
            path: "/gallery/1.jpg",
            scheme: "https",
        }
    }

    fn dir_with(
        cfg: &fixative_config::WebBotAuth,
        host: &str,
        jwks: &str,
        local: bool,
    ) -> Directory {
        let d = Directory::new(cfg);
        assert_eq!(d.insert(host, jwks.as_bytes(), VECTOR_TIME, local), Ok(1));
        d
    }

    fn vector() -> Headers {
        Headers(vec![
            ("signature-input".into(), VECTOR_INPUT.into()),
            ("signature".into(), VECTOR_SIG.into()),
        ])
    }

    #[test]
    fn the_published_vector_verifies_and_its_thumbprint_matches() {
        let cfg = fixative_config::WebBotAuth::default();
        let d = dir_with(&cfg, "signer.example", RFC_KEY_JWKS, true);
        let h = vector();
        assert_eq!(
            d.check(&msg(&h, "example.com"), VECTOR_TIME),
            Check::Verified {
                agent: "signer.example".into(),
                keyid: RFC_KEYID.into()
            }
        );
        // Replayed: the same nonce again, still within its validity.
        assert!(
            matches!(d.check(&msg(&h, "example.com"), VECTOR_TIME + 1), Check::Invalid(w) if w.contains("replayed"))
        );
        assert_eq!(d.nonces(), 1);
    }

    #[test]
    fn altered_expired_early_and_long_lived_signatures_fail() {
        let cfg = fixative_config::WebBotAuth::default();
        let d = dir_with(&cfg, "signer.example", RFC_KEY_JWKS, true);
        let h = vector();
        // Another host than the one signed.
        assert_eq!(
            d.check(&msg(&h, "example.org"), VECTOR_TIME),
            Check::Invalid("signature does not verify".into())
        );
        assert!(
            matches!(d.check(&msg(&h, "example.com"), 1_735_693_200), Check::Invalid(w) if w.starts_with("expired"))
        );
        assert!(
            matches!(d.check(&msg(&h, "example.com"), 1_735_689_600 - 61), Check::Invalid(w) if w.contains("future"))
        );
        // A flipped signature byte.
        let bad = Headers(vec![
            ("signature-input".into(), VECTOR_INPUT.into()),
            ("signature".into(), VECTOR_SIG.replace("uz2S", "uz2T")),
        ]);
        assert!(matches!(
            d.check(&msg(&bad, "example.com"), VECTOR_TIME),
            Check::Invalid(_)
        ));
        // Valid for an hour: too long for a 10-minute cap.
        let mut strict = cfg;
        strict.max_lifetime = Duration::from_secs(600);
        let d = dir_with(&strict, "signer.example", RFC_KEY_JWKS, true);
        assert!(
            matches!(d.check(&msg(&h, "example.com"), VECTOR_TIME), Check::Invalid(w) if w.contains("max_lifetime"))
        );
    }

    #[test]
    fn other_tags_and_unsigned_requests_are_absent() {
        let d = Directory::new(&fixative_config::WebBotAuth::default());
        assert_eq!(
            d.check(&msg(&Headers(vec![]), "example.com"), VECTOR_TIME),
            Check::Absent
        );
        let other = Headers(vec![
            (
                "signature-input".into(),
                VECTOR_INPUT.replace("web-bot-auth", "other-scheme"),
            ),
            ("signature".into(), VECTOR_SIG.into()),
        ]);
        assert_eq!(
            d.check(&msg(&other, "example.com"), VECTOR_TIME),
            Check::Absent
        );
        // No key anywhere and no agent named: nothing to fetch.
        assert!(matches!(
            d.check(&msg(&vector(), "example.com"), VECTOR_TIME),
            Check::Unverifiable(_)
        ));
    }

    /// What a signing agent does: `@authority` and `Signature-Agent`
    /// covered (its dictionary member when `key` is given), signed.
    struct Sign {
        authority: String,
        component: CoveredComponent,
        agent_value: String,
        input: String,
        sig: String,
    }
    impl UnsignedMessage for Sign {
        fn fetch_components_to_cover(&self) -> IndexMap<CoveredComponent, String> {
            let mut m = IndexMap::new();
            m.insert(
                CoveredComponent::Derived(DerivedComponent::Authority { req: false }),
                self.authority.clone(),
            );
            m.insert(self.component.clone(), self.agent_value.clone());
            m
        }
        fn register_header_contents(&mut self, input: String, sig: String) {
            self.input = format!("sig1={input}");
            self.sig = format!("sig1={sig}");
        }
    }

    fn jwks_of(secret: &[u8; 32]) -> String {
        use base64::Engine as _;
        let pk = ed25519_dalek::SigningKey::from_bytes(secret).verifying_key();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pk.as_bytes());
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}]}}"#)
    }

    /// Signs now (created now, expires in a minute) as `agent_header`
    /// says, with the dictionary `key` when given.
    fn signed(
        secret: &[u8; 32],
        keyid: &str,
        agent_header: &str,
        key: Option<&str>,
        nonce: &str,
    ) -> Headers {
        let (component, value) = match key {
            Some(k) => (
                CoveredComponent::HTTP(HTTPField {
                    name: "signature-agent".into(),
                    parameters: web_bot_auth::components::HTTPFieldParametersSet(vec![
                        HTTPFieldParameters::Key(k.into()),
                    ]),
                }),
                agent_header
                    .split_once('=')
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default(),
            ),
            None => (
                CoveredComponent::HTTP(HTTPField {
                    name: "signature-agent".into(),
                    parameters: web_bot_auth::components::HTTPFieldParametersSet(vec![]),
                }),
                agent_header.to_string(),
            ),
        };
        let mut s = Sign {
            authority: "artist.example".into(),
            component,
            agent_value: value,
            input: String::new(),
            sig: String::new(),
        };
        MessageSigner {
            keyid: keyid.into(),
            nonce: nonce.into(),
            tag: "web-bot-auth".into(),
        }
        .generate_signature_headers_content(
            &mut s,
            Duration::from_secs(60),
            Algorithm::Ed25519,
            &secret.to_vec(),
        )
        .expect("sign");
        Headers(vec![
            ("signature-agent".into(), agent_header.into()),
            ("signature-input".into(), s.input),
            ("signature".into(), s.sig),
        ])
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn a_named_agent_verifies_in_both_header_forms_and_is_pending_until_known() {
        let cfg = fixative_config::WebBotAuth::default();
        let d = Directory::new(&cfg);
        let secret = [7u8; 32];
        let jwks = jwks_of(&secret);
        let keyid = parse_jwks(jwks.as_bytes()).expect("jwks")[0].0.clone();
        let item = signed(&secret, &keyid, r#""https://crawler.example""#, None, "n1");
        let dict = signed(
            &secret,
            &keyid,
            r#"agent1="https://crawler.example""#,
            Some("agent1"),
            "n2",
        );
        let m = |h| msg(h, "artist.example");
        assert_eq!(
            d.check(&m(&item), now()),
            Check::Pending {
                agent: "crawler.example".into()
            }
        );
        assert!(d.needs_fetch("crawler.example", now()));
        d.insert("crawler.example", jwks.as_bytes(), now(), false)
            .expect("insert");
        assert!(!d.needs_fetch("crawler.example", now()));
        for h in [&item, &dict] {
            assert_eq!(
                d.check(&m(h), now()),
                Check::Verified {
                    agent: "crawler.example".into(),
                    keyid: keyid.clone()
                }
            );
        }
        // Someone else's key under the same agent name: forged.
        let other = [9u8; 32];
        let okid = parse_jwks(jwks_of(&other).as_bytes()).expect("jwks")[0]
            .0
            .clone();
        let forged = signed(&other, &okid, r#""https://crawler.example""#, None, "n3");
        assert!(matches!(d.check(&m(&forged), now()), Check::Invalid(w) if w.contains("not in")));
        // A changed Signature-Agent breaks the signature.
        let mut moved = signed(&secret, &keyid, r#""https://crawler.example""#, None, "n4");
        moved.0[0].1 = r#""https://crawler.example.evil""#.into();
        assert!(matches!(
            d.check(&m(&moved), now()),
            Check::Pending { .. } | Check::Invalid(_)
        ));
        // Not https.
        let http = signed(&secret, &keyid, r#""http://crawler.example""#, None, "n5");
        assert!(matches!(d.check(&m(&http), now()), Check::Invalid(w) if w.contains("https")));
    }

    #[test]
    fn rotation_and_inline_directories() {
        let d = Directory::new(&fixative_config::WebBotAuth::default());
        let old = jwks_of(&[2u8; 32]);
        d.insert("crawler.example", old.as_bytes(), 1_000, false)
            .expect("insert");
        let fresh = [4u8; 32];
        let kid = parse_jwks(jwks_of(&fresh).as_bytes()).expect("jwks")[0]
            .0
            .clone();
        let h = signed(&fresh, &kid, r#""https://crawler.example""#, None, "r1");
        let m = msg(&h, "artist.example");
        // The copy here is older than five minutes: the agent may have
        // rotated; fetch again before calling the key forged.
        assert_eq!(
            d.check(&m, now()),
            Check::Pending {
                agent: "crawler.example".into()
            }
        );
        assert!(d.needs_fetch("crawler.example", now()));
        // Just fetched and still without the key: forged.
        d.insert("crawler.example", old.as_bytes(), now(), false)
            .expect("insert");
        assert!(matches!(d.check(&m, now()), Check::Invalid(w) if w.contains("is not in")));
        // An inline directory (data: URL) names no one.
        use base64::Engine as _;
        let inline = format!(
            "\"data:application/http-message-signatures-directory;base64,{}\"",
            base64::engine::general_purpose::STANDARD.encode(jwks_of(&fresh))
        );
        let h = signed(&fresh, &kid, &inline, None, "r2");
        let m = msg(&h, "artist.example");
        let got = d.check(&m, now());
        assert!(
            matches!(&got, Check::Unverifiable(w) if w.contains("inline")),
            "{got:?}"
        );
    }

    #[test]
    fn agents_and_nonces_are_capped() {
        let mut cfg = fixative_config::WebBotAuth::default();
        cfg.max_agents = 2;
        cfg.max_nonces = 3;
        let d = Directory::new(&cfg);
        let jwks = jwks_of(&[1u8; 32]);
        for (i, h) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            d.insert(h, jwks.as_bytes(), 100 + i as u64, false)
                .expect("insert");
        }
        assert_eq!(d.len(), 2);
        assert!(!d.agents().iter().any(|(h, ..)| h == "a.example"));
        // Local files are never evicted for fetched agents.
        let d = Directory::new(&cfg);
        d.insert("l1.example", jwks.as_bytes(), 1, true)
            .expect("insert");
        d.insert("l2.example", jwks.as_bytes(), 1, true)
            .expect("insert");
        assert!(d.insert("f.example", jwks.as_bytes(), 2, false).is_err());
        // Nonces: at most 3 remembered.
        let secret = [1u8; 32];
        let keyid = parse_jwks(jwks.as_bytes()).expect("jwks")[0].0.clone();
        let d = Directory::new(&cfg);
        d.insert("crawler.example", jwks.as_bytes(), now(), false)
            .expect("insert");
        for i in 0..10 {
            let h = signed(
                &secret,
                &keyid,
                r#""https://crawler.example""#,
                None,
                &format!("n{i}"),
            );
            let m = msg(&h, "artist.example");
            assert!(matches!(d.check(&m, now()), Check::Verified { .. }));
        }
        assert_eq!(d.nonces(), 3);
    }

    #[test]
    fn bad_directories_are_refused() {
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(br#"{"keys":[{"kty":"RSA","e":"AQAB","n":"xx"}]}"#).is_err());
        assert!(parse_jwks(&vec![b' '; MAX_DIRECTORY_BYTES + 1]).is_err());
        // Unknown key types are skipped, not fatal.
        let mixed = format!(
            r#"{{"keys":[{{"kty":"XYZ"}},{}]}}"#,
            &RFC_KEY_JWKS[9..RFC_KEY_JWKS.len() - 2]
        );
        assert_eq!(
            parse_jwks(mixed.as_bytes()).map(|k| k[0].0.clone()),
            Ok(RFC_KEYID.to_string())
        );
    }

    proptest::proptest! {
        /// Hostile signature headers never panic the verifier.
        #[test]
        fn hostile_headers_never_panic(
            input in "[ -~]{0,200}",
            sig in "[ -~]{0,120}",
            agent in "[ -~]{0,80}",
        ) {
            let d = dir_with(&fixative_config::WebBotAuth::default(), "signer.example", RFC_KEY_JWKS, true);
            let h = Headers(vec![
                ("signature-input".into(), format!("sig1={input};tag=\"web-bot-auth\"")),
                ("signature".into(), sig),
                ("signature-agent".into(), agent),
            ]);
            let _ = d.check(&msg(&h, "example.com"), VECTOR_TIME);
        }
    }

    #[test]
    fn secret_matches_the_published_key() {
        assert_eq!(jwks_of(&RFC_SECRET), RFC_KEY_JWKS);
    }
}
