//! The verdict: what the engine decided for one request, and why.

use std::sync::Arc;

use serde::Serialize;

pub use fixative_config::Category;

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Pass to the origin.
    Allow,
    /// Pass to the origin; counted and logged as noteworthy.
    Observe,
    /// Matched a `limit` rule and is within its quota: passes.
    Limit,
    /// Over a `limit` rule's quota: 429.
    Limited,
    /// Serve protected image variants instead of originals.
    Cloak,
    /// Pages get the check as an interstitial page (this status), images
    /// protected variants, other requests this status.
    Challenge(u16),
    /// Answer slowly with worthless text; when the tarpit is full, refuse
    /// with this status.
    Tarpit(u16),
    /// Refuse with this status (403 unless the rule says otherwise).
    Block(u16),
}

impl Action {
    /// The bounded label used in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Observe => "observe",
            Action::Limit => "limit",
            Action::Limited => "limited",
            Action::Cloak => "cloak",
            Action::Challenge(_) => "challenge",
            Action::Tarpit(_) => "tarpit",
            Action::Block(_) => "block",
        }
    }
}

/// One signal that contributed to a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Signal name, e.g. `ua.catalog`.
    pub signal: &'static str,
    /// Weight added to the score.
    pub weight: i32,
    /// Human-readable detail, e.g. the crawler's name.
    pub detail: String,
}

/// The engine's decision for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// Sum of the reasons' weights.
    pub score: i32,
    /// Category of the matched crawler, if any.
    pub category: Option<Category>,
    /// Name of the matched crawler, if any.
    pub crawler: Option<Arc<str>>,
    /// Name of the rule that decided, if any.
    pub rule: Option<Arc<str>>,
    /// The signals and their weights.
    pub reasons: Vec<Reason>,
    /// In observe (shadow) mode: the action the policy would have taken.
    pub would: Option<Action>,
    /// Quota state when a `limit` rule decided.
    pub limit: Option<LimitInfo>,
    /// The pass the request carried.
    pub pass: crate::pass::PassState,
    /// Image requests left in the client's grace budget, when this request
    /// (an image without a valid pass) spent from it.
    pub grace_left: Option<u32>,
    /// The agent a verified Web Bot Auth signature names (host of its
    /// `Signature-Agent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_agent: Option<Arc<str>>,
    /// A signed agent whose key directory is not known yet: the proxy
    /// fetches it in the background.
    #[serde(skip)]
    pub signature_pending: Option<String>,
    /// A request a `limit` rule allowed on this node, still to be counted
    /// against the fleet's quota (only with a shared state backend).
    #[serde(skip)]
    pub shared_limit: Option<crate::fleet::SharedLimit>,
}

/// Quota state for `RateLimit-Policy` / `RateLimit` / `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitInfo {
    /// Requests per window.
    pub quota: u32,
    /// Window in seconds.
    pub window: u64,
    /// Requests left.
    pub remaining: u32,
    /// Seconds until the quota has room again (0 when it has).
    pub retry_after: u64,
    /// Seconds until the quota is fully restored.
    pub reset: u64,
}

impl Verdict {
    /// A plain allow with no signals.
    pub fn allow() -> Verdict {
        Verdict {
            action: Action::Allow,
            score: 0,
            category: None,
            crawler: None,
            rule: None,
            reasons: Vec::new(),
            would: None,
            limit: None,
            pass: crate::pass::PassState::None,
            grace_left: None,
            signed_agent: None,
            signature_pending: None,
            shared_limit: None,
        }
    }

    /// `category` label, `"none"` when there is none (bounded).
    pub fn category_label(&self) -> &'static str {
        self.category.map(Category::as_str).unwrap_or("none")
    }

    /// Compact one-line form for the `X-Fixative-Verdict` debug header.
    pub fn header_value(&self) -> String {
        let mut s = format!("action={}; score={}", self.action.as_str(), self.score);
        if let Some(c) = self.category {
            s.push_str("; category=");
            s.push_str(c.as_str());
        }
        if let Some(c) = &self.crawler {
            s.push_str("; crawler=");
            s.push_str(&sanitize(c));
        }
        if let Some(r) = &self.rule {
            s.push_str("; rule=");
            s.push_str(&sanitize(r));
        }
        if self.pass != crate::pass::PassState::None {
            s.push_str("; pass=");
            s.push_str(self.pass.as_str());
        }
        if let Some(w) = &self.would {
            s.push_str("; would=");
            s.push_str(w.as_str());
        }
        s
    }

    /// Reasons as `signal(+weight)` strings, for the access log.
    pub fn reason_strings(&self) -> Vec<String> {
        self.reasons
            .iter()
            .map(|r| format!("{}:{}({:+})", r.signal, r.detail, r.weight))
            .collect()
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .filter(|c| *c != ';')
        .collect()
}
