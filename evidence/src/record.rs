//! What one ledger line holds.
//!
//! Every line is one JSON object: its number `n`, the SHA-256 of the
//! previous line's bytes (`prev`, hex), the time, and a body tagged by
//! `kind`. The hash covers the exact bytes written, so the ledger needs no
//! canonical JSON: a reader hashes what is on disk.

use serde::{Deserialize, Serialize};

/// One line of the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// Position in the chain, from 0, with no gaps.
    pub n: u64,
    /// SHA-256 of the previous line's bytes (without its newline), hex;
    /// 64 zeros for record 0.
    pub prev: String,
    /// When the line was written (RFC 3339, UTC).
    pub time: String,
    /// What the line records.
    #[serde(flatten)]
    pub body: Body,
}

/// The kinds of line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// An AI crawler's or scraper's request and what it was served.
    Visit(Box<Visit>),
    /// An Ed25519 signature over (`n`, `prev`): it vouches for every line
    /// before it.
    Seal {
        /// The public key (32 bytes, base64).
        key: String,
        /// The signature (64 bytes, base64) of [`crate::seal_message`].
        sig: String,
    },
    /// The writer (re)started.
    Start {
        /// Fixative's version.
        version: String,
        /// The node's name (host name).
        node: String,
        /// Bytes of an unfinished last line cut off at start (a crash in
        /// the middle of a write); 0 normally.
        truncated_bytes: u64,
    },
    /// Visits that were not recorded because the writer's queue was full.
    Gap {
        /// How many.
        dropped: u64,
    },
    /// The oldest file was removed to keep the ledger within its disk
    /// budget; the chain now starts after `last_n`.
    Retention {
        /// The file's name.
        removed: String,
        /// Its last record.
        last_n: u64,
        /// That record's hash.
        last_hash: String,
    },
}

/// An AI crawler's or scraper's request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Visit {
    /// The proxy's request id (also in the access log and `X-Request-Id`).
    pub request_id: String,
    /// The site's name in the configuration.
    pub site: String,
    /// Host as requested.
    pub host: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Response status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The user agent as sent.
    pub user_agent: String,
    /// The client's address.
    pub client_ip: String,
    /// Its network (/24 for IPv4, /64 for IPv6), as the watermark's client
    /// field and the per-network limits see it.
    pub network: String,
    /// Its autonomous system, when an ASN database is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// The AS's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    /// The crawler's name in the catalog, when it named itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crawler: Option<String>,
    /// Its category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What the proxy did.
    pub action: String,
    /// In observe mode: what it would have done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would: Option<String>,
    /// The policy rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Detection score.
    pub score: i32,
    /// The signals behind the verdict.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The site's reservation as this client was given it.
    pub reservation: Reservation,
    /// The protected variant served instead of the original, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The watermark payload (16 hex digits) in the served image, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

/// The reservation of rights the site published, as this client met it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reservation {
    /// robots.txt: whether it disallows this path to this user agent, and
    /// when this client last fetched it from this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robots_txt: Option<Robots>,
    /// The reservation headers on this response, as sent (`X-Robots-Tag`,
    /// `TDM-Reservation`, `TDM-Policy`, `Content-Usage`, `Link`).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The IPTC `plus:DataMining` term written into the image's XMP, when
    /// the proxy inserted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmp: Option<String>,
}

/// robots.txt as it applies to one request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Robots {
    /// The served robots.txt disallows this path to this user agent.
    pub disallowed: bool,
    /// The `User-agent` token whose group applied (`*` when the file names
    /// none of the crawler's tokens).
    #[serde(default)]
    pub agent: String,
    /// That group's lines as served (`User-agent`, `Allow`, `Disallow`).
    #[serde(default)]
    pub group: Vec<String>,
    /// When this client last fetched robots.txt here (RFC 3339), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_at: Option<String>,
}
