//! Turning a finished request into an evidence-ledger visit.
//!
//! Which requests are recorded: those of crawlers in a category the site
//! reserves against (`directives.robots_categories`, the AI categories by
//! default), and with `evidence.scrapers = true` every request the policy
//! blocked, limited, tarpitted or cloaked (or would have, in observe mode).
//! People who pass are never recorded.
//!
//! What a visit holds is read from what was actually sent: the
//! reservation headers of the response as written, whether the image's
//! XMP was rewritten, the variant and watermark payload served, and
//! whether the robots.txt the site serves disallows the path to this
//! agent (and when this client fetched it from this node).

use fixative_config::Evidence;
use fixative_evidence::{Ledger, LedgerConfig, Reservation, Robots, Visit};
use fixative_rules::{Action, Verdict};

use crate::activity::Activity;
use crate::runtime::{Runtime, SiteRuntime};

/// The reservation headers a visit records, as sent.
const RESERVATION_HEADERS: [&str; 6] = [
    "x-robots-tag",
    "tdm-reservation",
    "tdm-policy",
    "content-usage",
    "content-signal",
    "link",
];

/// Starts the ledger's writer.
pub fn open(cfg: &Evidence) -> Result<Ledger, String> {
    let key = fixative_evidence::private_key_from_pem(&cfg.signing_key_pem).map_err(|e| {
        format!(
            "evidence.signing_key_file {}: {e}",
            cfg.signing_key_file.display()
        )
    })?;
    let node = hostname();
    Ledger::open(LedgerConfig {
        dir: cfg.dir.clone(),
        key,
        seal_every: cfg.seal_every,
        seal_interval: cfg.seal_interval,
        max_file_bytes: cfg.max_file_bytes,
        max_total_bytes: cfg.max_total_bytes,
        queue: cfg.queue,
        node,
    })
    .map_err(|e| format!("evidence.dir: {e}"))
}

/// This machine's name, for the ledger's `start` lines.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned()
}

fn refused(a: Action) -> bool {
    matches!(
        a,
        Action::Limited | Action::Block(_) | Action::Tarpit(_) | Action::Cloak
    )
}

/// Whether a request goes into the ledger.
pub fn wanted(cfg: &Evidence, site: &SiteRuntime, v: &Verdict) -> bool {
    let reserved = v.category.is_some_and(|c| {
        site.directives
            .robots_categories
            .iter()
            .any(|r| r == c.as_str())
    });
    reserved || (cfg.scrapers && (refused(v.action) || v.would.is_some_and(refused)))
}

/// The robots.txt product tokens of a client: its catalog entry's, else
/// the first product token of its user agent.
pub fn agents<'a>(rt: &'a Runtime, crawler: Option<&str>, ua: &'a str) -> Vec<&'a str> {
    if let Some(name) = crawler
        && let Some(c) = rt
            .engine
            .catalog()
            .crawlers()
            .iter()
            .find(|c| c.name == name)
        && !c.robots.is_empty()
    {
        return c.robots.iter().map(String::as_str).collect();
    }
    let token = ua
        .split([' ', '/', ';', '('])
        .find(|t| !t.is_empty())
        .unwrap_or("*");
    vec![token]
}

/// What the logging phase knows of a finished request: its access-log
/// entry and what the ledger adds.
pub struct Finished<'a> {
    /// The request's access-log entry.
    pub entry: &'a crate::access_log::Entry<'a>,
    /// User agent.
    pub user_agent: &'a str,
    /// The response as written.
    pub response: Option<&'a pingora::http::ResponseHeader>,
    /// The XMP term written into the image, if it was.
    pub xmp: Option<&'a str>,
    /// The protected variant served and its watermark payload.
    pub variant: Option<(&'static str, Option<u64>)>,
    /// When this client last fetched the site's robots.txt here (unix
    /// seconds).
    pub robots_fetched: Option<u64>,
}

/// Builds the visit.
pub fn visit(
    rt: &Runtime,
    site: &SiteRuntime,
    activity: &Activity,
    f: &Finished<'_>,
    agents: &[&str],
) -> Visit {
    let headers = f
        .response
        .map(|r| {
            RESERVATION_HEADERS
                .iter()
                .flat_map(|name| {
                    r.headers
                        .get_all(*name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .map(|v| (name.to_string(), v.to_string()))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    let e = f.entry;
    let path_only = e.path.split('?').next().unwrap_or(e.path);
    let robots = site.directives.robots_txt.then(|| {
        let judged = activity.judge(&site.name, agents, &site.robots_groups);
        Robots {
            disallowed: judged.as_ref().is_some_and(|j| j.disallows(path_only)),
            agent: judged.as_ref().map(|j| j.agent.clone()).unwrap_or_default(),
            group: judged.map(|j| j.group.clone()).unwrap_or_default(),
            fetched_at: f
                .robots_fetched
                .and_then(|t| fixative_evidence::unix_rfc3339(t as i64)),
        }
    });
    let bucket = crate::cloak::client_bucket(e.client_ip);
    let network = if bucket.contains(':') {
        format!("{bucket}/64")
    } else {
        format!("{bucket}/24")
    };
    let net = rt.engine.network_info(e.client_ip);
    let v = e.verdict;
    Visit {
        request_id: e.request_id.to_string(),
        site: site.name.clone(),
        host: e.host.to_string(),
        method: e.method.to_string(),
        path: e.path.chars().take(2048).collect(),
        status: e.status,
        bytes: e.bytes,
        user_agent: f.user_agent.chars().take(512).collect(),
        client_ip: e.client_ip.to_string(),
        network,
        asn: net.0,
        as_org: net.1,
        crawler: v.crawler.as_deref().map(str::to_string),
        category: v.category.map(|c| c.as_str().to_string()),
        action: v.action.as_str().to_string(),
        would: v.would.map(|a| a.as_str().to_string()),
        rule: v.rule.as_deref().map(str::to_string),
        score: v.score,
        reasons: v.reason_strings(),
        reservation: Reservation {
            robots_txt: robots,
            headers,
            xmp: f.xmp.map(str::to_string),
        },
        variant: f.variant.map(|(s, _)| s.to_string()),
        watermark: f.variant.and_then(|(_, p)| p).map(|p| format!("{p:016x}")),
    }
}
