//! The evidence ledger: an append-only, tamper-evident record of AI
//! crawlers' and scrapers' visits and of the reservation of rights each was
//! served.
//!
//! - Every line is a JSON object holding the SHA-256 of the previous line
//!   ([`record::Line::prev`]): changing, removing or reordering any line
//!   breaks the chain at that line.
//! - Every `seal_every` records, every `seal_interval`, at each file's end
//!   and when the writer stops, a `seal` line signs (Ed25519) its position
//!   and the hash of the line before it, and so vouches for every line
//!   before it: rewriting the whole chain needs the operator's private key.
//! - Files (`evidence-YYYYMMDD-NNNNNN.jsonl`) rotate by size and by UTC
//!   day; the oldest are removed to stay within the disk budget, each
//!   removal recorded in the chain.
//!
//! What it cannot show: lines after the last seal are chained but not yet
//! signed (the writer seals at least every `seal_interval`); cutting the
//! newest lines off the end leaves a shorter ledger that still verifies;
//! someone with the private key can forge a whole new ledger (keep the key
//! off the node, and hold exports or seal lines elsewhere, e.g. daily).
//!
//! [`Ledger`] writes on its own thread behind a bounded queue; [`verify`]
//! and [`export`] read a directory.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod record;
mod verify;
mod writer;

pub use record::{Body, Line, Reservation, Robots, Visit};
pub use verify::{Broken, Export, ExportFilter, Report, export, verify};
pub use writer::{Ledger, LedgerConfig, Stats};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

pub use ed25519_dalek::{SigningKey as PrivateKey, VerifyingKey as PublicKey};

/// The `prev` of record 0.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a line's bytes (without its newline), hex.
pub fn line_hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The bytes a seal signs: a domain tag, the seal's position, the hash of
/// the line before it and the seal's own time (so that every byte of a
/// seal line is covered: its key and signature by the check itself).
pub fn seal_message(n: u64, prev: &str, time: &str) -> Vec<u8> {
    let mut m = b"fixative-evidence-v1\0".to_vec();
    m.extend_from_slice(&n.to_be_bytes());
    m.extend_from_slice(prev.as_bytes());
    m.push(0);
    m.extend_from_slice(time.as_bytes());
    m
}

/// A seal's `key` and `sig` fields.
pub fn sign(key: &SigningKey, n: u64, prev: &str, time: &str) -> (String, String) {
    let sig = key.sign(&seal_message(n, prev, time));
    (
        B64.encode(key.verifying_key().as_bytes()),
        B64.encode(sig.to_bytes()),
    )
}

/// Checks a seal: `Ok(key)` with the key that signed it.
pub fn check_seal(
    n: u64,
    prev: &str,
    time: &str,
    key: &str,
    sig: &str,
) -> Result<VerifyingKey, String> {
    let key = public_key_from_base64(key)?;
    let sig = B64
        .decode(sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or("the signature is not 64 bytes of base64")?;
    key.verify(&seal_message(n, prev, time), &sig)
        .map_err(|_| "the signature does not match".to_string())?;
    Ok(key)
}

/// A public key from its 32 bytes in base64 (as seals carry it).
pub fn public_key_from_base64(s: &str) -> Result<VerifyingKey, String> {
    B64.decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| "not an Ed25519 public key (32 bytes, base64)".to_string())
}

/// A public key's base64 form (as seals carry it).
pub fn public_key_base64(k: &VerifyingKey) -> String {
    B64.encode(k.as_bytes())
}

/// Reads a private key: PKCS#8 PEM (`openssl genpkey -algorithm ed25519`,
/// `fixative evidence keygen`).
pub fn private_key_from_pem(pem: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| format!("not an Ed25519 private key in PKCS#8 PEM: {e}"))
}

/// Reads a public key: PEM (`SubjectPublicKeyInfo`) or 32 bytes in base64.
pub fn public_key_from_text(text: &str) -> Result<VerifyingKey, String> {
    if text.contains("-----BEGIN") {
        VerifyingKey::from_public_key_pem(text)
            .map_err(|e| format!("not an Ed25519 public key in PEM: {e}"))
    } else {
        public_key_from_base64(text)
    }
}

/// A new key pair: the private key as PKCS#8 PEM, the public key as PEM.
pub fn generate_key() -> Result<(String, String, VerifyingKey), String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let public = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    Ok((private.to_string(), public, key.verifying_key()))
}

/// Now, RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// Unix seconds as RFC 3339 (UTC); `None` out of range.
pub fn unix_rfc3339(secs: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .map(rfc3339)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses `2026-11-30` (midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("{s:?} is neither a date (2026-11-30) nor an RFC 3339 time"))
}

/// Whether a file name is one of the ledger's.
pub fn is_ledger_file(name: &str) -> bool {
    name.starts_with("evidence-") && name.ends_with(".jsonl")
}

/// The ledger's files in `dir`, in chain order (their names sort so).
pub fn ledger_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| is_ledger_file(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_verify_and_keys_round_trip() {
        let (private, public, vk) = generate_key().unwrap();
        let key = private_key_from_pem(&private).unwrap();
        assert_eq!(key.verifying_key(), vk);
        assert_eq!(public_key_from_text(&public).unwrap(), vk);
        let t = "2026-11-30T10:00:00.000Z";
        let (k, s) = sign(&key, 7, GENESIS, t);
        assert_eq!(check_seal(7, GENESIS, t, &k, &s).unwrap(), vk);
        // Another position, hash, time or key: refused.
        assert!(check_seal(8, GENESIS, t, &k, &s).is_err());
        assert!(check_seal(7, &line_hash(b"x"), t, &k, &s).is_err());
        assert!(check_seal(7, GENESIS, "2026-11-30T10:00:01.000Z", &k, &s).is_err());
        let (_, other, _) = generate_key().unwrap();
        let other = public_key_base64(&public_key_from_text(&other).unwrap());
        assert!(check_seal(7, GENESIS, t, &other, &s).is_err());
        assert!(check_seal(7, GENESIS, t, "nope", &s).is_err());
        assert!(
            private_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn times_parse_as_dates_or_rfc3339() {
        assert_eq!(
            parse_time("2026-11-30").unwrap().unix_timestamp(),
            1_795_996_800
        );
        assert!(parse_time("2026-11-30T12:00:00Z").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}
