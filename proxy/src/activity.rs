//! Live activity for the dashboard: requests per second by action over the
//! last hour, top crawlers and categories, and robots.txt violators
//! (clients that fetched robots.txt here, then a path it disallows to
//! them).
//!
//! Every structure is bounded: a 3,600-slot ring of per-second counters,
//! at most [`MAX_CRAWLERS`] crawler names (they come from the catalog), an
//! LRU of [`MAX_ROBOTS_CLIENTS`] robots.txt fetchers and one of
//! [`MAX_VIOLATORS`] violators, and [`MAX_AGENTS`] parsed robots.txt rule
//! sets. Recording a request is a few atomic increments; the locks are
//! taken only for named crawlers and for clients that fetched robots.txt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use serde::Serialize;

/// The actions, in the dashboard's order.
pub const ACTIONS: [&str; 8] = [
    "allow",
    "observe",
    "limit",
    "limited",
    "cloak",
    "challenge",
    "tarpit",
    "block",
];
/// Seconds of history.
pub const HISTORY: u64 = 3600;
/// Crawler names counted at most (more are counted as `other`).
pub const MAX_CRAWLERS: usize = 1024;
/// robots.txt fetchers remembered.
pub const MAX_ROBOTS_CLIENTS: usize = 4096;
/// Violators remembered.
pub const MAX_VIOLATORS: usize = 1024;
/// Parsed robots.txt rule sets (per site and agent) kept.
pub const MAX_AGENTS: usize = 256;
/// Shards of the robots.txt fetchers.
const SHARDS: usize = 16;

struct Slot {
    second: AtomicU64,
    counts: [AtomicU32; ACTIONS.len()],
}

/// A client that fetched robots.txt.
#[derive(Clone)]
struct Fetch {
    site: Arc<str>,
    at: u64,
}

/// A robots.txt violator, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Violator {
    /// Client address.
    pub client_ip: IpAddr,
    /// The crawler's name when it named itself.
    pub crawler: Option<String>,
    /// User agent (first 200 characters).
    pub user_agent: String,
    /// Site.
    pub site: String,
    /// Disallowed requests after fetching robots.txt.
    pub requests: u64,
    /// When it fetched robots.txt (unix seconds).
    pub robots_fetched: u64,
    /// Last disallowed path (first 200 characters).
    pub last_path: String,
    /// When (unix seconds).
    pub last_seen: u64,
}

/// Per-crawler counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrawlerCount {
    /// Requests.
    pub requests: u64,
    /// Category.
    pub category: &'static str,
    /// Requests by action.
    pub actions: HashMap<&'static str, u64>,
    /// Last request (unix seconds).
    pub last_seen: u64,
}

/// The robots.txt each site served last, and rule sets parsed from it.
struct RobotsRules {
    /// Per site: the robots.txt judged by, and the user-agent tokens it
    /// names (lower case).
    texts: HashMap<Arc<str>, (Arc<str>, Arc<Named>)>,
    /// Parsed rules per site and token the file names (or `*`): bounded
    /// by what the file names, whatever user agents clients send.
    parsed: LruCache<(Arc<str>, String), Arc<Judged>>,
}

/// User-agent tokens a robots.txt names, lower case.
type Named = std::collections::HashSet<String>;

/// The user-agent tokens a robots.txt names, lower case.
fn named_agents(text: &str) -> Named {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            k.trim().eq_ignore_ascii_case("user-agent").then(|| {
                v.split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
        })
        .collect()
}

/// robots.txt as it applies to one agent: its rules, and the group's
/// lines as served (for the evidence ledger).
pub struct Judged {
    robot: texting_robots::Robot,
    /// The token whose group applies (`*` when the file names none).
    pub agent: String,
    /// That group's lines (at most [`MAX_GROUP_LINES`]).
    pub group: Vec<String>,
}

impl Judged {
    /// Whether these rules disallow `path`.
    pub fn disallows(&self, path: &str) -> bool {
        !self.robot.allowed(path)
    }
}

/// Lines of a robots.txt group kept in an evidence record.
pub const MAX_GROUP_LINES: usize = 32;

/// The lines of the group (or groups) of `text` that name `agent` (case
/// insensitive): their `User-agent` lines and rules, comments dropped.
pub fn group_lines(text: &str, agent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut agents: Vec<&str> = Vec::new();
    let mut in_rules = false;
    let mut ours = false;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("user-agent") {
            if in_rules {
                agents.clear();
                in_rules = false;
                ours = false;
            }
            agents.push(line);
            if v.eq_ignore_ascii_case(agent) {
                ours = true;
            }
            continue;
        }
        if !in_rules {
            in_rules = true;
            if ours {
                out.extend(agents.iter().map(|a| a.to_string()));
            }
        }
        if ours && (k.eq_ignore_ascii_case("allow") || k.eq_ignore_ascii_case("disallow")) {
            out.push(line.to_string());
        }
        if out.len() >= MAX_GROUP_LINES {
            out.truncate(MAX_GROUP_LINES);
            break;
        }
    }
    out
}

/// The dashboard's live data.
pub struct Activity {
    slots: Box<[Slot]>,
    totals: [AtomicU64; ACTIONS.len()],
    crawlers: Mutex<HashMap<Arc<str>, CrawlerCount>>,
    categories: Mutex<HashMap<&'static str, u64>>,
    /// Sharded by client address, so that the per-request lookup of
    /// clients that fetched robots.txt does not serialize on one lock.
    fetches: Box<[Mutex<LruCache<IpAddr, Fetch>>]>,
    /// Whether any client fetched robots.txt (skips the lock otherwise).
    any_fetch: std::sync::atomic::AtomicBool,
    violators: Mutex<LruCache<(IpAddr, u64), Violator>>,
    rules: Mutex<RobotsRules>,
    started: u64,
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Index of an action label in [`ACTIONS`].
pub fn action_index(label: &str) -> usize {
    ACTIONS.iter().position(|a| *a == label).unwrap_or(0)
}

fn shard_of(ip: IpAddr) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

fn ua_key(ua: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ua.hash(&mut h);
    h.finish()
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    /// Empty activity.
    pub fn new() -> Activity {
        Activity {
            slots: (0..HISTORY)
                .map(|_| Slot {
                    second: AtomicU64::new(u64::MAX),
                    counts: Default::default(),
                })
                .collect(),
            totals: Default::default(),
            crawlers: Mutex::new(HashMap::new()),
            categories: Mutex::new(HashMap::new()),
            fetches: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(cap(MAX_ROBOTS_CLIENTS / SHARDS))))
                .collect(),
            any_fetch: Default::default(),
            violators: Mutex::new(LruCache::new(cap(MAX_VIOLATORS))),
            rules: Mutex::new(RobotsRules {
                texts: HashMap::new(),
                parsed: LruCache::new(cap(MAX_AGENTS)),
            }),
            started: crate::challenge::unix_now(),
        }
    }

    /// Counts one request.
    pub fn record(
        &self,
        now: u64,
        action: &'static str,
        category: Option<&'static str>,
        crawler: Option<&Arc<str>>,
    ) {
        let i = action_index(action);
        if let Some(slot) = self.slots.get((now % HISTORY) as usize) {
            let seen = slot.second.load(Ordering::Acquire);
            if seen != now
                && slot
                    .second
                    .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                for c in &slot.counts {
                    c.store(0, Ordering::Relaxed);
                }
            }
            if slot.second.load(Ordering::Acquire) == now
                && let Some(c) = slot.counts.get(i)
            {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(t) = self.totals.get(i) {
            t.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(cat) = category
            && let Ok(mut m) = self.categories.lock()
        {
            *m.entry(cat).or_default() += 1;
        }
        if let Some(name) = crawler
            && let Ok(mut m) = self.crawlers.lock()
        {
            let key = if m.contains_key(name) || m.len() < MAX_CRAWLERS {
                name.clone()
            } else {
                Arc::from("other")
            };
            let e = m.entry(key).or_default();
            e.requests += 1;
            e.category = category.unwrap_or("unknown");
            *e.actions
                .entry(ACTIONS.get(i).copied().unwrap_or("allow"))
                .or_default() += 1;
            e.last_seen = now;
        }
    }

    /// A client was served robots.txt for `site`: remember when, and the
    /// text (to judge its later requests by).
    pub fn robots_served(&self, site: &str, client: IpAddr, text: &str, now: u64) {
        let site: Arc<str> = Arc::from(site);
        if let Ok(mut r) = self.rules.lock() {
            let changed = r.texts.get(&site).is_none_or(|(t, _)| **t != *text);
            if changed {
                r.texts.insert(
                    site.clone(),
                    (Arc::from(text), Arc::new(named_agents(text))),
                );
                r.parsed.clear();
            }
        }
        if let Some(Ok(mut f)) = self.fetches.get(shard_of(client)).map(|m| m.lock()) {
            f.put(client, Fetch { site, at: now });
            self.any_fetch.store(true, Ordering::Release);
        }
    }

    /// When `client` last fetched robots.txt of `site` here.
    pub fn robots_fetched(&self, site: &str, client: IpAddr) -> Option<u64> {
        if !self.any_fetch.load(Ordering::Acquire) {
            return None;
        }
        let f = self.fetches.get(shard_of(client))?.lock().ok()?;
        f.peek(&client).filter(|f| &*f.site == site).map(|f| f.at)
    }

    /// Whether the robots.txt `site` serves disallows `path` to a client
    /// named by `agents` (robots.txt product tokens, most specific first;
    /// the first one the file names decides, else the `*` group).
    /// `fallback` is the text to judge by when the site has served none yet.
    pub fn disallowed(&self, site: &str, agents: &[&str], path: &str, fallback: &str) -> bool {
        self.judge(site, agents, fallback)
            .is_some_and(|j| j.disallows(path))
    }

    /// robots.txt of `site` as it applies to `agents` (see
    /// [`Activity::disallowed`]), parsed once per site and agent list.
    pub fn judge(&self, site: &str, agents: &[&str], fallback: &str) -> Option<Arc<Judged>> {
        let mut r = self.rules.lock().ok()?;
        let site: Arc<str> = Arc::from(site);
        let (text, named) = r
            .texts
            .entry(site.clone())
            .or_insert_with(|| (Arc::from(fallback), Arc::new(named_agents(fallback))))
            .clone();
        // The first of the client's tokens the file names decides; else
        // the `*` group. Only tokens the file names become cache keys, so
        // clients cannot make the proxy parse robots.txt for each new
        // user agent they invent.
        let agent = agents
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .find(|a| named.contains(a))
            .unwrap_or_else(|| "*".to_string());
        let key = (site, agent);
        if let Some(j) = r.parsed.get(&key) {
            return Some(j.clone());
        }
        let shown = agents
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&key.1))
            .copied()
            .unwrap_or("*");
        let robot = texting_robots::Robot::new(shown, text.as_bytes()).ok()?;
        let j = Arc::new(Judged {
            robot,
            agent: shown.to_string(),
            group: group_lines(&text, shown),
        });
        r.parsed.put(key, j.clone());
        Some(j)
    }

    /// Parsed rule sets held now (for the bound's test).
    #[cfg(test)]
    fn parsed_len(&self) -> usize {
        self.rules.lock().map(|r| r.parsed.len()).unwrap_or(0)
    }

    /// A request from a client that fetched robots.txt: counted as a
    /// violation when robots.txt disallows its path to it.
    #[allow(clippy::too_many_arguments)]
    pub fn check_violation(
        &self,
        site: &str,
        client: IpAddr,
        user_agent: &str,
        crawler: Option<&str>,
        agents: &[&str],
        path: &str,
        now: u64,
    ) -> bool {
        let Some(fetched) = self.robots_fetched(site, client) else {
            return false;
        };
        self.violation_after(
            fetched, site, client, user_agent, crawler, agents, path, now,
        )
    }

    /// [`Activity::check_violation`] for a client known to have fetched
    /// robots.txt at `fetched`.
    #[allow(clippy::too_many_arguments)]
    pub fn violation_after(
        &self,
        fetched: u64,
        site: &str,
        client: IpAddr,
        user_agent: &str,
        crawler: Option<&str>,
        agents: &[&str],
        path: &str,
        now: u64,
    ) -> bool {
        if path == "/robots.txt" || !self.disallowed(site, agents, path, "") {
            return false;
        }
        if let Ok(mut v) = self.violators.lock() {
            let key = (client, ua_key(user_agent));
            match v.get_mut(&key) {
                Some(e) => {
                    e.requests += 1;
                    e.last_path = clip(path, 200);
                    e.last_seen = now;
                    e.robots_fetched = fetched;
                }
                None => {
                    v.put(
                        key,
                        Violator {
                            client_ip: client,
                            crawler: crawler.map(str::to_string),
                            user_agent: clip(user_agent, 200),
                            site: site.to_string(),
                            requests: 1,
                            robots_fetched: fetched,
                            last_path: clip(path, 200),
                            last_seen: now,
                        },
                    );
                }
            }
        }
        true
    }

    /// The dashboard's view: `points` buckets of `step` seconds ending at
    /// `now`, per action (requests per second), totals, top crawlers,
    /// categories and violators.
    pub fn snapshot(&self, now: u64, step: u64, top: usize) -> serde_json::Value {
        self.snapshot_window(now, step, top, HISTORY)
    }

    /// [`Activity::snapshot`] with the series covering only the last
    /// `window` seconds (at least one step, at most the hour).
    pub fn snapshot_window(
        &self,
        now: u64,
        step: u64,
        top: usize,
        window: u64,
    ) -> serde_json::Value {
        let step = step.clamp(1, HISTORY);
        let window = window.clamp(step, HISTORY);
        let points = (window / step) as usize;
        let mut series: Vec<Vec<f64>> = vec![vec![0.0; points]; ACTIONS.len()];
        for age in 0..(points as u64 * step) {
            let Some(sec) = now.checked_sub(age) else {
                break;
            };
            let Some(slot) = self.slots.get((sec % HISTORY) as usize) else {
                continue;
            };
            if slot.second.load(Ordering::Acquire) != sec {
                continue;
            }
            let bucket = points.saturating_sub(1 + (age / step) as usize);
            for (i, c) in slot.counts.iter().enumerate() {
                if let Some(v) = series.get_mut(i).and_then(|s| s.get_mut(bucket)) {
                    *v += f64::from(c.load(Ordering::Relaxed)) / step as f64;
                }
            }
        }
        let mut by_action = serde_json::Map::new();
        let mut totals = serde_json::Map::new();
        for (i, a) in ACTIONS.iter().enumerate() {
            by_action.insert(
                a.to_string(),
                serde_json::to_value(series.get(i).cloned().unwrap_or_default())
                    .unwrap_or_default(),
            );
            totals.insert(
                a.to_string(),
                self.totals
                    .get(i)
                    .map(|t| t.load(Ordering::Relaxed))
                    .unwrap_or(0)
                    .into(),
            );
        }
        let last_minute: serde_json::Map<String, serde_json::Value> = ACTIONS
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut n = 0u64;
                for age in 0..60 {
                    let Some(sec) = now.checked_sub(age) else {
                        break;
                    };
                    if let Some(slot) = self.slots.get((sec % HISTORY) as usize)
                        && slot.second.load(Ordering::Acquire) == sec
                    {
                        n += u64::from(
                            slot.counts
                                .get(i)
                                .map(|c| c.load(Ordering::Relaxed))
                                .unwrap_or(0),
                        );
                    }
                }
                (a.to_string(), n.into())
            })
            .collect();
        let mut crawlers: Vec<(String, CrawlerCount)> = self
            .crawlers
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
            .unwrap_or_default();
        crawlers.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
        crawlers.truncate(top);
        let mut categories: Vec<(&'static str, u64)> = self
            .categories
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut violators: Vec<Violator> = self
            .violators
            .lock()
            .map(|v| v.iter().map(|(_, x)| x.clone()).collect())
            .unwrap_or_default();
        violators.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then(b.last_seen.cmp(&a.last_seen))
        });
        violators.truncate(top);
        serde_json::json!({
            "now": now,
            "since": self.started,
            "series": {
                "step_seconds": step,
                "window_seconds": points as u64 * step,
                "points": points,
                "end": now,
                "requests_per_second": by_action,
            },
            "last_minute": last_minute,
            "totals": totals,
            "crawlers": crawlers.into_iter().map(|(name, c)| serde_json::json!({
                "name": name,
                "category": c.category,
                "requests": c.requests,
                "actions": c.actions,
                "last_seen": c.last_seen,
            })).collect::<Vec<_>>(),
            "categories": categories.into_iter().map(|(name, n)| serde_json::json!({
                "name": name, "requests": n,
            })).collect::<Vec<_>>(),
            "robots_violators": violators,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_counts_per_second_and_forgets_after_an_hour() {
        let a = Activity::new();
        let t = 1_800_000_000;
        for _ in 0..20 {
            a.record(t, "allow", None, None);
        }
        for _ in 0..5 {
            a.record(
                t - 15,
                "block",
                Some("ai-training"),
                Some(&Arc::from("GPTBot")),
            );
        }
        let s = a.snapshot(t, 10, 10);
        let allow = s["series"]["requests_per_second"]["allow"]
            .as_array()
            .unwrap();
        assert_eq!(allow.len(), 360);
        assert_eq!(allow[359], 2.0);
        let block = s["series"]["requests_per_second"]["block"]
            .as_array()
            .unwrap();
        assert_eq!(block[358], 0.5);
        assert_eq!(s["totals"]["block"], 5);
        assert_eq!(s["last_minute"]["allow"], 20);
        assert_eq!(s["crawlers"][0]["name"], "GPTBot");
        assert_eq!(s["crawlers"][0]["actions"]["block"], 5);
        assert_eq!(s["categories"][0]["name"], "ai-training");
        // An hour later the slot is reused: the old second no longer counts.
        a.record(t + HISTORY, "cloak", None, None);
        let s = a.snapshot(t + HISTORY, 10, 10);
        assert_eq!(s["last_minute"]["allow"], 0);
        assert_eq!(s["last_minute"]["cloak"], 1);
        // Totals stay.
        assert_eq!(s["totals"]["allow"], 20);
        // The last ten minutes in seconds.
        let s = a.snapshot_window(t + HISTORY, 1, 10, 600);
        let cloak = s["series"]["requests_per_second"]["cloak"]
            .as_array()
            .unwrap();
        assert_eq!(cloak.len(), 600);
        assert_eq!(cloak[599], 1.0);
        assert_eq!(s["series"]["window_seconds"], 600);
    }

    #[test]
    fn crawler_names_are_capped() {
        let a = Activity::new();
        for i in 0..(MAX_CRAWLERS + 50) {
            a.record(1, "allow", None, Some(&Arc::from(format!("bot{i}"))));
        }
        let m = a.crawlers.lock().unwrap();
        assert_eq!(m.len(), MAX_CRAWLERS + 1);
        assert_eq!(m.get("other").unwrap().requests, 50);
    }

    #[test]
    fn violators_are_clients_that_fetched_robots_then_a_disallowed_path() {
        let a = Activity::new();
        let robots = "User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n";
        let bot: IpAddr = "203.0.113.5".parse().unwrap();
        let person: IpAddr = "198.51.100.7".parse().unwrap();
        let gpt = "Mozilla/5.0 (compatible; GPTBot/1.2)";
        // Before fetching robots.txt: not a violation.
        assert!(!a.check_violation("s", bot, gpt, Some("GPTBot"), &["GPTBot"], "/art/1.jpg", 10));
        a.robots_served("s", bot, robots, 11);
        a.robots_served("s", person, robots, 11);
        assert!(a.check_violation("s", bot, gpt, Some("GPTBot"), &["GPTBot"], "/art/1.jpg", 12));
        assert!(a.check_violation("s", bot, gpt, Some("GPTBot"), &["GPTBot"], "/art/2.jpg", 13));
        assert!(!a.check_violation(
            "s",
            bot,
            gpt,
            Some("GPTBot"),
            &["GPTBot"],
            "/robots.txt",
            13
        ));
        // Another site's robots.txt was not fetched.
        assert!(!a.check_violation("t", bot, gpt, Some("GPTBot"), &["GPTBot"], "/art/1.jpg", 13));
        // `*` group: only /private/ is disallowed.
        let ff = "Mozilla/5.0 Firefox/140.0";
        assert!(!a.check_violation("s", person, ff, None, &["Mozilla"], "/art/1.jpg", 14));
        assert!(a.check_violation("s", person, ff, None, &["Mozilla"], "/private/x", 14));
        let s = a.snapshot(20, 10, 10);
        let v = s["robots_violators"].as_array().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["requests"], 2);
        assert_eq!(v[0]["crawler"], "GPTBot");
        assert_eq!(v[0]["last_path"], "/art/2.jpg");
        assert_eq!(v[0]["robots_fetched"], 11);
        // A changed robots.txt is used from then on.
        a.robots_served("s", bot, "User-agent: *\nAllow: /\n", 30);
        assert!(!a.check_violation("s", bot, gpt, Some("GPTBot"), &["GPTBot"], "/art/3.jpg", 31));
    }

    #[test]
    fn the_group_that_applies_is_quoted() {
        let text = "# ours\nUser-agent: GPTBot\nUser-agent: CCBot\nDisallow: / # all\n\nUser-agent: *\nDisallow: /private/\nAllow: /\nSitemap: /s.xml\n";
        assert_eq!(
            group_lines(text, "ccbot"),
            ["User-agent: GPTBot", "User-agent: CCBot", "Disallow: /"]
        );
        assert_eq!(
            group_lines(text, "*"),
            ["User-agent: *", "Disallow: /private/", "Allow: /"]
        );
        assert!(group_lines(text, "Bingbot").is_empty());
        let a = Activity::new();
        a.robots_served("s", "192.0.2.1".parse().unwrap(), text, 1);
        let j = a.judge("s", &["Bingbot"], "").unwrap();
        assert_eq!(j.agent, "*");
        assert_eq!(j.group[0], "User-agent: *");
        let j = a.judge("s", &["CCBot"], "").unwrap();
        assert_eq!(j.agent, "CCBot");
        // Not served yet: judged by the fallback text.
        let j = a
            .judge("other", &["GPTBot"], "User-agent: GPTBot\nDisallow: /\n")
            .unwrap();
        assert_eq!(j.group, ["User-agent: GPTBot", "Disallow: /"]);
        let long = format!("User-agent: x\n{}", "Disallow: /a\n".repeat(100));
        assert_eq!(group_lines(&long, "x").len(), MAX_GROUP_LINES);
    }

    #[test]
    fn invented_user_agents_do_not_grow_the_parsed_rules() {
        let a = Activity::new();
        let robots = "User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n";
        a.robots_served("s", "192.0.2.1".parse().unwrap(), robots, 1);
        for i in 0..1000 {
            let token = format!("Bot{i}");
            assert!(a.disallowed("s", &[&token], "/private/x", ""));
            assert!(!a.disallowed("s", &[&token], "/art", ""));
        }
        assert!(a.disallowed("s", &["gptbot"], "/art", ""));
        // `*` and GPTBot: two rule sets, whatever was sent.
        assert_eq!(a.parsed_len(), 2);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Whatever an origin serves as robots.txt and whatever a
            /// client sends, judging a request never panics.
            #[test]
            fn hostile_robots_and_agents_never_panic(
                text in prop::collection::vec(any::<u8>(), 0..2048),
                lines in prop::collection::vec("(User-agent|Disallow|Allow|Sitemap|Crawl-delay|#)?: ?[ -~]{0,20}", 0..20),
                agent in "[ -~]{0,16}",
                path in "[ -~]{0,32}",
            ) {
                let a = Activity::new();
                let ip: IpAddr = "192.0.2.1".parse().unwrap();
                for robots in [String::from_utf8_lossy(&text).into_owned(), lines.join("\n")] {
                    a.robots_served("s", ip, &robots, 1);
                    let _ = a.disallowed("s", &[&agent], &path, "");
                    let _ = a.check_violation("s", ip, &agent, None, &[&agent], &path, 2);
                    let _ = a.judge("s", &[&agent, "*"], "");
                    let _ = group_lines(&robots, &agent);
                }
            }
        }
    }

    #[test]
    fn robots_fetchers_and_violators_are_bounded() {
        let a = Activity::new();
        for i in 0..(MAX_ROBOTS_CLIENTS as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            a.robots_served("s", ip, "User-agent: *\nDisallow: /\n", 1);
            a.check_violation("s", ip, "x", None, &["x"], "/a", 2);
        }
        let held: usize = a.fetches.iter().map(|f| f.lock().unwrap().len()).sum();
        assert!(
            held <= MAX_ROBOTS_CLIENTS && held > MAX_ROBOTS_CLIENTS / 2,
            "{held}"
        );
        assert_eq!(a.violators.lock().unwrap().len(), MAX_VIOLATORS);
    }
}
