//! Passes and challenges: the signed tokens of the in-page check.
//!
//! A **challenge** is issued to a page's script: a random nonce, the time,
//! a proof-of-work difficulty and the client's binding (IP prefix and
//! user-agent hash), signed. The script finds a counter so that
//! `SHA-256(challenge ":" counter)` starts with `difficulty` zero bits and
//! posts it with what it observed of its environment. A solved challenge
//! earns a **pass**: a cookie with flags (automation seen, no-JS path), an
//! expiry and the same binding, signed with HMAC-SHA256 under a key derived
//! from the configured secret. Earlier secrets stay accepted (rotation).
//!
//! Everything here is pure: the caller supplies time and randomness, and
//! remembers spent challenges (single use).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Name of the pass cookie.
pub const PASS_COOKIE: &str = "fixative_pass";

const PASS_KIND: u8 = b'P';
const CHALLENGE_KIND: u8 = b'C';
const MAC_LEN: usize = 16;
/// kind, flags, issued, expires, net, agent.
const PASS_LEN: usize = 1 + 1 + 4 + 4 + 8 + 8;
/// kind, difficulty, issued, nonce, net, agent.
const CHALLENGE_LEN: usize = 1 + 1 + 4 + 16 + 8 + 8;

/// What a pass records about its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// The check reported automation.
    pub automation: bool,
    /// Earned on the no-JavaScript path: passes challenges for pages, but
    /// is not a browser check.
    pub nojs: bool,
}

impl Flags {
    /// A pass whose check saw automation.
    pub const AUTOMATION: Flags = Flags {
        automation: true,
        nojs: false,
    };
    /// A pass from the no-JavaScript path.
    pub const NOJS: Flags = Flags {
        automation: false,
        nojs: true,
    };

    fn bits(self) -> u8 {
        u8::from(self.automation) | (u8::from(self.nojs) << 1)
    }
    fn from_bits(b: u8) -> Flags {
        Flags {
            automation: b & 1 != 0,
            nojs: b & 2 != 0,
        }
    }
}

/// Why a pass or a challenge is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not a token of ours (bad encoding or length).
    Malformed,
    /// The signature does not verify under any accepted key.
    Forged,
    /// Past its expiry (or issued in the future).
    Expired,
    /// Issued to another network (IPv4 /24, IPv6 /64).
    OtherNetwork,
    /// Issued to another user agent.
    OtherAgent,
    /// A challenge answer without the required proof of work.
    NoProof,
    /// A no-JS challenge answered before its delay.
    TooEarly,
    /// A pass revoked (its client met the robots.txt trap, on any node).
    Revoked,
}

impl Invalid {
    /// Bounded label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::Forged => "forged",
            Invalid::Expired => "expired",
            Invalid::OtherNetwork => "other-network",
            Invalid::OtherAgent => "other-agent",
            Invalid::NoProof => "no-proof",
            Invalid::TooEarly => "too-early",
            Invalid::Revoked => "revoked",
        }
    }
}

/// The pass a request carries, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassState {
    /// No pass cookie.
    #[default]
    None,
    /// A pass from the in-page check that saw no automation.
    Valid,
    /// A pass from the no-JavaScript path.
    NoJs,
    /// A pass from a check that reported automation.
    Automation,
    /// A pass cookie that does not verify.
    Invalid(Invalid),
}

impl PassState {
    /// The state a verified pass gives.
    pub fn of(p: &Pass) -> PassState {
        if p.flags.automation {
            PassState::Automation
        } else if p.flags.nojs {
            PassState::NoJs
        } else {
            PassState::Valid
        }
    }

    /// Bounded label for logs, metrics and `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            PassState::None => "none",
            PassState::Valid => "valid",
            PassState::NoJs => "nojs",
            PassState::Automation => "automation",
            PassState::Invalid(i) => i.as_str(),
        }
    }
}

impl serde::Serialize for PassState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The network and user agent a token is bound to (8-byte hashes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    net: [u8; 8],
    agent: [u8; 8],
}

fn hash8(label: &[u8], data: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(data);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
    out
}

impl Binding {
    /// The binding of a client: its IPv4 /24 or IPv6 /64 and its user agent.
    pub fn of(ip: IpAddr, user_agent: &str) -> Binding {
        let net = match crate::state::prefix_of(ip) {
            IpAddr::V4(v4) => hash8(b"fixative net4\0", &v4.octets()),
            IpAddr::V6(v6) => hash8(b"fixative net6\0", &v6.octets()),
        };
        Binding {
            net,
            agent: hash8(b"fixative agent\0", user_agent.as_bytes()),
        }
    }
}

/// Signing keys: the current one signs, every one verifies.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} accepted)", self.keys.len())
    }
}

fn derive(secret: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(b"fixative pass key v1");
    mac.finalize().into_bytes().into()
}

// HMAC accepts keys of any length; this is never reached.
fn unreachable_hmac() -> HmacSha256 {
    #[allow(clippy::expect_used)]
    <HmacSha256 as Mac>::new_from_slice(&[0u8; 32]).expect("HMAC takes any key length")
}

impl Keys {
    /// Keys from the current secret and older ones still accepted. An
    /// empty current secret yields keys that verify nothing (no passes).
    pub fn new(current: &str, old: &[String]) -> Keys {
        let mut keys = Vec::with_capacity(1 + old.len());
        if !current.is_empty() {
            keys.push(derive(current));
        }
        keys.extend(old.iter().filter(|s| !s.is_empty()).map(|s| derive(s)));
        Keys { keys }
    }

    /// The keys of a configuration: `challenge.secret`, else
    /// `protector.secret`, plus `challenge.old_secrets`.
    pub fn from_config(cfg: &fixative_config::Config) -> Keys {
        let (secret, _) = cfg.challenge.signing_secret(&cfg.protector.secret);
        Keys::new(secret, &cfg.challenge.old_secrets)
    }

    /// Whether passes can be issued at all.
    pub fn can_sign(&self) -> bool {
        !self.keys.is_empty()
    }

    fn mac(key: &[u8; 32], data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(full.get(..MAC_LEN).unwrap_or(&[0; MAC_LEN]));
        out
    }

    fn sign(&self, payload: &[u8]) -> Option<String> {
        let key = self.keys.first()?;
        let mut out = Vec::with_capacity(payload.len() + MAC_LEN);
        out.extend_from_slice(payload);
        out.extend_from_slice(&Keys::mac(key, payload));
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Decodes and checks the signature; returns the payload.
    fn open<const N: usize>(&self, token: &str, kind: u8) -> Result<[u8; N], Invalid> {
        // Base64 of N + 16 bytes, no padding: reject anything longer first.
        if token.len() > (N + MAC_LEN).div_ceil(3) * 4 {
            return Err(Invalid::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| Invalid::Malformed)?;
        if raw.len() != N + MAC_LEN {
            return Err(Invalid::Malformed);
        }
        let (payload, tag) = raw.split_at(N);
        if payload.first() != Some(&kind) {
            return Err(Invalid::Malformed);
        }
        let ok = self.keys.iter().any(|k| {
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(k).unwrap_or_else(|_| unreachable_hmac());
            mac.update(payload);
            // Constant-time comparison of the truncated tag.
            mac.verify_truncated_left(tag).is_ok()
        });
        if !ok {
            return Err(Invalid::Forged);
        }
        let mut out = [0u8; N];
        out.copy_from_slice(payload);
        Ok(out)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_be_bytes(x)
}

fn bytes8_at(b: &[u8], at: usize) -> [u8; 8] {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    x
}

/// Concatenates fields into a fixed-size payload.
fn pack<const N: usize>(fields: &[&[u8]]) -> [u8; N] {
    let mut p = [0u8; N];
    let mut at = 0;
    for f in fields {
        if let Some(dst) = p.get_mut(at..at + f.len()) {
            dst.copy_from_slice(f);
        }
        at += f.len();
    }
    p
}

fn secs(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// What a verified pass says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// What the check saw.
    pub flags: Flags,
    /// Unix time of issue.
    pub issued: u64,
    /// Unix time of expiry.
    pub expires: u64,
}

impl Keys {
    /// A pass cookie value, or `None` when there is no key.
    pub fn mint_pass(&self, b: Binding, flags: Flags, now: u64, ttl_secs: u64) -> Option<String> {
        let expires = secs(now.saturating_add(ttl_secs));
        let p: [u8; PASS_LEN] = pack(&[
            &[PASS_KIND],
            &[flags.bits()],
            &secs(now).to_be_bytes(),
            &expires.to_be_bytes(),
            &b.net,
            &b.agent,
        ]);
        self.sign(&p)
    }

    /// Verifies a pass for a client at `now` (Unix seconds).
    pub fn verify_pass(&self, token: &str, b: Binding, now: u64) -> Result<Pass, Invalid> {
        let p: [u8; PASS_LEN] = self.open(token, PASS_KIND)?;
        let flags = Flags::from_bits(p.get(1).copied().unwrap_or(0));
        let issued = u64::from(u32_at(&p, 2));
        let expires = u64::from(u32_at(&p, 6));
        // A little tolerance for clocks of a fleet that disagree.
        if now >= expires || issued > now.saturating_add(60) {
            return Err(Invalid::Expired);
        }
        if bytes8_at(&p, 10) != b.net {
            return Err(Invalid::OtherNetwork);
        }
        if bytes8_at(&p, 18) != b.agent {
            return Err(Invalid::OtherAgent);
        }
        Ok(Pass {
            flags,
            issued,
            expires,
        })
    }

    /// The pass state of a request from its `Cookie` header values.
    pub fn pass_state<'a>(
        &self,
        cookies: impl IntoIterator<Item = &'a str>,
        b: Binding,
        now: u64,
    ) -> PassState {
        let Some(token) = cookie_value(cookies, PASS_COOKIE) else {
            return PassState::None;
        };
        match self.verify_pass(token, b, now) {
            Ok(p) if p.flags.automation => PassState::Automation,
            Ok(p) if p.flags.nojs => PassState::NoJs,
            Ok(_) => PassState::Valid,
            Err(e) => PassState::Invalid(e),
        }
    }

    /// A challenge for a client: `nonce` must be fresh randomness.
    pub fn mint_challenge(
        &self,
        b: Binding,
        nonce: [u8; 16],
        difficulty: u8,
        now: u64,
    ) -> Option<String> {
        let p: [u8; CHALLENGE_LEN] = pack(&[
            &[CHALLENGE_KIND],
            &[difficulty],
            &secs(now).to_be_bytes(),
            &nonce,
            &b.net,
            &b.agent,
        ]);
        self.sign(&p)
    }

    /// Opens a challenge answered by a client: signature, age (issued at
    /// least `min_age` and at most `ttl` seconds ago), binding and, when
    /// `counter` is given, the proof of work. Returns its nonce (for the
    /// caller's single-use check) and its time of issue.
    pub fn open_challenge(
        &self,
        token: &str,
        counter: Option<u64>,
        b: Binding,
        now: u64,
        min_age: u64,
        ttl: u64,
    ) -> Result<Challenge, Invalid> {
        let p: [u8; CHALLENGE_LEN] = self.open(token, CHALLENGE_KIND)?;
        let difficulty = p.get(1).copied().unwrap_or(0);
        let issued = u64::from(u32_at(&p, 2));
        if issued > now.saturating_add(60) || now >= issued.saturating_add(ttl) {
            return Err(Invalid::Expired);
        }
        if now < issued.saturating_add(min_age) {
            return Err(Invalid::TooEarly);
        }
        if bytes8_at(&p, 22) != b.net {
            return Err(Invalid::OtherNetwork);
        }
        if bytes8_at(&p, 30) != b.agent {
            return Err(Invalid::OtherAgent);
        }
        if let Some(c) = counter
            && leading_zero_bits(&pow_hash(token, c)) < u32::from(difficulty)
        {
            return Err(Invalid::NoProof);
        }
        let mut nonce = [0u8; 16];
        if let Some(s) = p.get(6..22) {
            nonce.copy_from_slice(s);
        }
        Ok(Challenge {
            nonce,
            issued,
            difficulty,
        })
    }
}

/// A verified challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// Its random nonce (single use).
    pub nonce: [u8; 16],
    /// Unix time of issue.
    pub issued: u64,
    /// Its proof-of-work difficulty.
    pub difficulty: u8,
}

/// The proof-of-work hash: `SHA-256(token ":" counter)`, counter in decimal.
pub fn pow_hash(token: &str, counter: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(b":");
    h.update(counter.to_string().as_bytes());
    h.finalize().into()
}

/// Leading zero bits of a hash.
pub fn leading_zero_bits(h: &[u8]) -> u32 {
    let mut n = 0;
    for b in h {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Solves a challenge (what the page script does; for tests and benches).
pub fn solve(token: &str, difficulty: u8) -> u64 {
    (0..)
        .find(|c| leading_zero_bits(&pow_hash(token, *c)) >= u32::from(difficulty))
        .unwrap_or(0)
}

/// The value of cookie `name` across `Cookie` header values.
pub fn cookie_value<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers.into_iter().find_map(|h| {
        h.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
    })
}

/// What the page script reports of its environment. Every field is
/// optional: a missing one is simply not judged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Report {
    /// `navigator.webdriver`.
    pub webdriver: Option<bool>,
    /// `navigator.userAgent`.
    pub ua: Option<String>,
    /// `navigator.userAgentData.brands` as `brand/version`.
    pub brands: Option<Vec<String>>,
    /// `navigator.userAgentData.platform`.
    pub ua_platform: Option<String>,
    /// `navigator.platform`.
    pub platform: Option<String>,
    /// `typeof window.chrome === "object"`.
    pub chrome: Option<bool>,
    /// `outerWidth`, `outerHeight`.
    pub outer: Option<[i64; 2]>,
    /// `navigator.plugins.length`.
    pub plugins: Option<i64>,
    /// Globals that automation frameworks leave behind, found on the page.
    pub globals: Vec<String>,
    /// `navigator.languages`, comma-separated.
    pub languages: Option<String>,
    /// Milliseconds the proof of work took.
    pub ms: Option<f64>,
}

fn os_of_ua(ua: &str) -> Option<&'static str> {
    if ua.contains("Android") {
        Some("android")
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        Some("ios")
    } else if ua.contains("Windows") {
        Some("windows")
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        Some("mac")
    } else if ua.contains("CrOS") {
        Some("chromeos")
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some("linux")
    } else {
        None
    }
}

fn os_of_hint(p: &str) -> Option<&'static str> {
    match p.trim().to_ascii_lowercase().as_str() {
        "android" => Some("android"),
        "windows" => Some("windows"),
        "macos" => Some("mac"),
        "chrome os" | "chromeos" => Some("chromeos"),
        "linux" => Some("linux"),
        _ => None,
    }
}

fn chrome_major(ua: &str) -> Option<u32> {
    let i = ua.find("Chrome/")? + "Chrome/".len();
    ua.get(i..)?.split(['.', ' ']).next()?.parse().ok()
}

/// Judges a report: the traces of automation it shows, each a short
/// phrase for logs and `explain`. Only strong traces are listed: what a
/// person's everyday browser does not show.
///
/// `request_ua` is the `User-Agent` of the request that posted the report;
/// `sec_fetch_site` its `Sec-Fetch-Site` (a script's `fetch` from the page
/// sends `same-origin` in every current browser).
pub fn assess(r: &Report, request_ua: &str, sec_fetch_site: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if r.webdriver == Some(true) {
        out.push("navigator.webdriver is true".to_string());
    }
    let headless = |s: &str| s.contains("HeadlessChrome") || s.contains("PhantomJS");
    if r.ua.as_deref().is_some_and(headless)
        || r.brands.iter().flatten().any(|b| headless(b))
        || headless(request_ua)
    {
        out.push("headless browser".to_string());
    }
    if let Some(ua) = &r.ua
        && ua != request_ua
    {
        out.push("navigator.userAgent differs from the User-Agent header".to_string());
    }
    // Chromium reports its real brand and version in userAgentData, even
    // when the user agent string is overridden.
    if let (Some(brands), Some(major)) = (&r.brands, chrome_major(request_ua)) {
        let versions: Vec<u32> = brands
            .iter()
            .filter_map(|b| {
                let (name, v) = b.rsplit_once('/')?;
                let name = name.trim();
                (name == "Chromium" || name == "Google Chrome" || name == "HeadlessChrome")
                    .then(|| v.split('.').next()?.trim().parse().ok())?
            })
            .collect();
        if !versions.is_empty() && !versions.contains(&major) {
            out.push("client hints name another Chrome version than the user agent".to_string());
        }
        if brands.is_empty() {
            out.push("empty client-hint brands".to_string());
        }
    }
    if let Some(p) = r.ua_platform.as_deref().and_then(os_of_hint)
        && let Some(u) = os_of_ua(request_ua)
        && p != u
        // Chrome on iPad asks for desktop pages as a Mac.
        && !(p == "ios" || u == "ios")
    {
        out.push("client-hint platform differs from the user agent".to_string());
    }
    // Old headless Chromium has no window; mobile browsers, web views and
    // prerendered pages may report 0 too, so only a desktop Chromium is
    // judged by it.
    let desktop_chromium = request_ua.contains("Chrome/")
        && !request_ua.contains("Mobile")
        && !request_ua.contains("Android");
    if r.outer == Some([0, 0]) && desktop_chromium {
        out.push("window has no size".to_string());
    }
    if !r.globals.is_empty() {
        let mut g: Vec<&str> = r.globals.iter().take(4).map(String::as_str).collect();
        g.sort_unstable();
        out.push(format!("automation globals: {}", g.join(", ")));
    }
    if crate::engine::sends_sec_fetch(request_ua) && sec_fetch_site != Some("same-origin") {
        out.push("not posted by a page of this site (Sec-Fetch-Site)".to_string());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pass_verifies_for_its_client_only() {
        let k = Keys::new("a-long-enough-secret-1", &[]);
        let b = Binding::of(ip("203.0.113.7"), UA);
        let t = k.mint_pass(b, Flags::default(), 1_000, 3_600).unwrap();
        assert!(t.len() < 80, "{t}");
        assert!(k.verify_pass(&t, b, 1_100).is_ok());
        // Same /24: still valid (addresses change within a network).
        let same_net = Binding::of(ip("203.0.113.200"), UA);
        assert!(k.verify_pass(&t, same_net, 1_100).is_ok());
        let other_net = Binding::of(ip("198.51.100.7"), UA);
        assert_eq!(
            k.verify_pass(&t, other_net, 1_100),
            Err(Invalid::OtherNetwork)
        );
        let other_ua = Binding::of(ip("203.0.113.7"), "curl/8.0");
        assert_eq!(k.verify_pass(&t, other_ua, 1_100), Err(Invalid::OtherAgent));
        assert_eq!(k.verify_pass(&t, b, 4_600), Err(Invalid::Expired));
        // IPv6: bound to the /64.
        let v6 = Binding::of(ip("2001:db8:1:2::10"), UA);
        let t6 = k.mint_pass(v6, Flags::default(), 1_000, 3_600).unwrap();
        assert!(
            k.verify_pass(&t6, Binding::of(ip("2001:db8:1:2:ffff::1"), UA), 1_100)
                .is_ok()
        );
        assert_eq!(
            k.verify_pass(&t6, Binding::of(ip("2001:db8:1:3::10"), UA), 1_100),
            Err(Invalid::OtherNetwork)
        );
    }

    #[test]
    fn forged_and_tampered_passes_are_refused() {
        let k = Keys::new("a-long-enough-secret-1", &[]);
        let other = Keys::new("another-secret-entirely", &[]);
        let b = Binding::of(ip("203.0.113.7"), UA);
        let t = other.mint_pass(b, Flags::default(), 1_000, 3_600).unwrap();
        assert_eq!(k.verify_pass(&t, b, 1_100), Err(Invalid::Forged));
        // Flip each byte of a genuine pass: never accepted.
        let good = k.mint_pass(b, Flags::AUTOMATION, 1_000, 3_600).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
        for i in 0..raw.len() {
            let mut r = raw.clone();
            r[i] ^= 0x01;
            let t = URL_SAFE_NO_PAD.encode(&r);
            assert!(k.verify_pass(&t, b, 1_100).is_err(), "byte {i}");
        }
        for junk in ["", "x", "....", &"A".repeat(10_000), "P", "🦀🦀"] {
            assert!(k.verify_pass(junk, b, 1_100).is_err());
        }
        // No key: nothing verifies, nothing is minted.
        let none = Keys::new("", &[]);
        assert!(none.mint_pass(b, Flags::default(), 1, 1).is_none());
        assert_eq!(none.verify_pass(&good, b, 1_100), Err(Invalid::Forged));
    }

    #[test]
    fn rotation_accepts_the_old_key_and_signs_with_the_new() {
        let old = Keys::new("the-old-secret-value", &[]);
        let rotated = Keys::new(
            "the-new-secret-value",
            &["the-old-secret-value".to_string()],
        );
        let b = Binding::of(ip("192.0.2.1"), UA);
        let t = old.mint_pass(b, Flags::default(), 1_000, 3_600).unwrap();
        assert!(rotated.verify_pass(&t, b, 1_100).is_ok());
        let t2 = rotated
            .mint_pass(b, Flags::default(), 1_000, 3_600)
            .unwrap();
        assert_eq!(old.verify_pass(&t2, b, 1_100), Err(Invalid::Forged));
    }

    #[test]
    fn pass_state_reads_the_cookie_among_others() {
        let k = Keys::new("a-long-enough-secret-1", &[]);
        let b = Binding::of(ip("192.0.2.1"), UA);
        let auto = k.mint_pass(b, Flags::AUTOMATION, 1_000, 3_600).unwrap();
        let human = k.mint_pass(b, Flags::default(), 1_000, 3_600).unwrap();
        let nojs = k.mint_pass(b, Flags::NOJS, 1_000, 3_600).unwrap();
        let h = format!("theme=dark; {PASS_COOKIE}={human}; x=1");
        assert_eq!(k.pass_state([h.as_str()], b, 1_100), PassState::Valid);
        let h2 = format!("{PASS_COOKIE}={auto}");
        assert_eq!(
            k.pass_state(["a=b", h2.as_str()], b, 1_100),
            PassState::Automation
        );
        let h3 = format!("{PASS_COOKIE}={nojs}");
        assert_eq!(k.pass_state([h3.as_str()], b, 1_100), PassState::NoJs);
        assert_eq!(k.pass_state(["a=b"], b, 1_100), PassState::None);
        assert_eq!(
            k.pass_state([format!("{PASS_COOKIE}=zzz").as_str()], b, 1_100),
            PassState::Invalid(Invalid::Malformed)
        );
    }

    #[test]
    fn challenges_need_their_proof_and_their_client() {
        let k = Keys::new("a-long-enough-secret-1", &[]);
        let b = Binding::of(ip("192.0.2.1"), UA);
        let t = k.mint_challenge(b, [7; 16], 8, 1_000).unwrap();
        let c = solve(&t, 8);
        let ok = k.open_challenge(&t, Some(c), b, 1_010, 0, 300).unwrap();
        assert_eq!(ok.nonce, [7; 16]);
        // A counter that does not hash to 8 zero bits.
        let bad = (0..)
            .find(|x| leading_zero_bits(&pow_hash(&t, *x)) < 8)
            .unwrap();
        assert_eq!(
            k.open_challenge(&t, Some(bad), b, 1_010, 0, 300),
            Err(Invalid::NoProof)
        );
        assert_eq!(
            k.open_challenge(&t, Some(c), b, 1_400, 0, 300),
            Err(Invalid::Expired)
        );
        assert_eq!(
            k.open_challenge(
                &t,
                Some(c),
                Binding::of(ip("198.51.100.1"), UA),
                1_010,
                0,
                300
            ),
            Err(Invalid::OtherNetwork)
        );
        // The no-JS path: a delay, no proof.
        assert_eq!(
            k.open_challenge(&t, None, b, 1_001, 3, 300),
            Err(Invalid::TooEarly)
        );
        assert!(k.open_challenge(&t, None, b, 1_003, 3, 300).is_ok());
        // A pass is not a challenge and the reverse.
        let p = k.mint_pass(b, Flags::default(), 1_000, 3_600).unwrap();
        assert_eq!(
            k.open_challenge(&p, Some(0), b, 1_010, 0, 300),
            Err(Invalid::Malformed)
        );
        assert_eq!(k.verify_pass(&t, b, 1_010), Err(Invalid::Malformed));
    }

    #[test]
    fn assess_names_automation_and_spares_browsers() {
        let person = Report {
            webdriver: Some(false),
            ua: Some(UA.into()),
            brands: Some(vec!["Chromium/131".into(), "Not_A Brand/24".into()]),
            ua_platform: Some("Linux".into()),
            platform: Some("Linux x86_64".into()),
            chrome: Some(true),
            outer: Some([1280, 800]),
            plugins: Some(5),
            globals: vec![],
            languages: Some("en-US,en".into()),
            ms: Some(12.0),
        };
        assert!(assess(&person, UA, Some("same-origin")).is_empty());
        let firefox =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
        let ff = Report {
            webdriver: Some(false),
            ua: Some(firefox.into()),
            platform: Some("Win32".into()),
            ..Report::default()
        };
        assert!(assess(&ff, firefox, Some("same-origin")).is_empty());

        let mut driven = person.clone();
        driven.webdriver = Some(true);
        assert_eq!(assess(&driven, UA, Some("same-origin")).len(), 1);
        // A user agent overridden on a Chromium of another version.
        let mut spoof = person.clone();
        spoof.brands = Some(vec!["HeadlessChrome/156".into(), "Chromium/156".into()]);
        let found = assess(&spoof, UA, Some("same-origin"));
        assert!(found.iter().any(|f| f.contains("headless")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("version")), "{found:?}");
        let mut win = person.clone();
        win.ua_platform = Some("Windows".into());
        assert_eq!(assess(&win, UA, Some("same-origin")).len(), 1);
        let mut globals = person.clone();
        globals.globals = vec!["__playwright__binding__".into()];
        assert_eq!(assess(&globals, UA, Some("same-origin")).len(), 1);
        // A native solver posting without the page.
        assert_eq!(assess(&person, UA, None).len(), 1);
        // A phone's browser may report a zero-size window: not judged.
        let phone = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
        let mobile = Report {
            ua: Some(phone.into()),
            outer: Some([0, 0]),
            ua_platform: Some("Android".into()),
            brands: Some(vec!["Chromium/131".into()]),
            ..Report::default()
        };
        assert!(assess(&mobile, phone, Some("same-origin")).is_empty());
        let mut headless = person.clone();
        headless.outer = Some([0, 0]);
        assert_eq!(assess(&headless, UA, Some("same-origin")).len(), 1);
        let mut other = person;
        other.ua = Some("Mozilla/5.0 something else".into());
        assert_eq!(assess(&other, UA, Some("same-origin")).len(), 1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Hostile cookie values and challenge answers never panic and
        /// never verify.
        #[test]
        fn any_token_is_refused_without_panic(s in ".{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let k = Keys::new("a-long-enough-secret-1", &[]);
            let b = Binding::of("192.0.2.1".parse().unwrap(), "ua");
            prop_assert!(k.verify_pass(&s, b, 1_000).is_err());
            prop_assert!(k.open_challenge(&s, Some(1), b, 1_000, 0, 300).is_err());
            let t = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert!(k.verify_pass(&t, b, 1_000).is_err());
            prop_assert!(k.open_challenge(&t, None, b, 1_000, 0, 300).is_err());
            let h = format!("a=b; {PASS_COOKIE}={s}");
            let _ = k.pass_state([h.as_str()], b, 1_000);
            let _ = cookie_value([s.as_str()], PASS_COOKIE);
        }

        /// Any JSON-ish report is judged without panic.
        #[test]
        fn any_report_is_judged(s in ".{0,300}", ua in ".{0,120}") {
            if let Ok(r) = serde_json::from_str::<Report>(&s) {
                let _ = assess(&r, &ua, Some("same-origin"));
            }
            let r = Report { ua: Some(ua.clone()), brands: Some(vec![s.clone()]), ua_platform: Some(s.clone()), ..Report::default() };
            let _ = assess(&r, &s, None);
        }
    }
}
