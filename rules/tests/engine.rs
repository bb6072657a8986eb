//! The engine with the shipped catalog and the built-in policies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use fixative_config::Config;
use fixative_rules::{Action, Category, Engine, RequestFacts};

/// Browser versions are judged as of a fixed day, so that these tests
/// never age (the stale-browser threshold follows the calendar).
const TODAY: &str = "2026-11-25";

fn engine() -> Engine {
    Engine::with_default_config().unwrap().as_of(TODAY).unwrap()
}

fn engine_with(extra: &str) -> Engine {
    let src = format!(
        "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\n{extra}\n"
    );
    Engine::new(&Config::from_toml(&src, "t", None).unwrap())
        .unwrap()
        .as_of(TODAY)
        .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Req {
    ip: IpAddr,
    path: String,
    ua: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    t: Duration,
}

impl Req {
    fn new(ip_: &str, ua: &str) -> Req {
        Req {
            ip: ip(ip_),
            path: "/".into(),
            ua: Some(ua.into()),
            headers: None,
            t: Duration::from_secs(1),
        }
    }
    fn browser_headers(mut self) -> Req {
        let mut h = BTreeMap::new();
        h.insert(
            "accept".into(),
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into(),
        );
        h.insert("accept-language".into(), "en-GB,en;q=0.9".into());
        h.insert("sec-fetch-mode".into(), "navigate".into());
        self.headers = Some(h);
        self
    }
    fn path(mut self, p: &str) -> Req {
        self.path = p.into();
        self
    }
    fn at(mut self, secs: u64) -> Req {
        self.t = Duration::from_secs(secs);
        self
    }
    fn eval(&self, e: &Engine, policy: &str) -> fixative_rules::Verdict {
        let empty = BTreeMap::new();
        let facts = RequestFacts {
            now: self.t,
            client_ip: self.ip,
            method: "GET",
            host: "a.test",
            path: &self.path,
            user_agent: self.ua.as_deref(),
            headers_known: self.headers.is_some(),
            header: self.headers.as_ref().unwrap_or(&empty),
            http10: false,
            rdns: fixative_rules::Rdns::Unknown,
            // Wall-clock time advances with the engine's clock, as in the
            // proxy and in replays (penalties are kept by both).
            unix_time: 1_800_000_000 + self.t.as_secs(),
            known: fixative_rules::Known::default(),
        };
        e.evaluate(&facts, policy)
    }
}

/// Real, current browser user agents (desktop and mobile).
const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
];

#[test]
fn browsers_with_realistic_headers_are_never_flagged() {
    let e = engine();
    for (i, ua) in BROWSERS.iter().enumerate() {
        let v = Req::new(&format!("198.51.100.{i}"), ua)
            .browser_headers()
            .eval(&e, "default");
        assert_eq!(v.score, 0, "{ua}: {v:?}");
        assert!(v.crawler.is_none() && v.category.is_none(), "{ua}: {v:?}");
        assert!(matches!(v.action, Action::Limit), "{ua}: {v:?}");
        assert_eq!(v.rule.as_deref(), Some("limit-everyone"));
    }
}

#[test]
fn ai_crawlers_blocked_observe_mode_passes() {
    let e = engine();
    for ua in [
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        "CCBot/2.0 (https://commoncrawl.org/faq/)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT-User/1.0; +https://openai.com/bot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        "img2dataset/1.45.0 (https://github.com/rom1504/img2dataset)",
    ] {
        let v = Req::new("203.0.113.5", ua).eval(&e, "default");
        assert_eq!(v.action, Action::Block(403), "{ua}: {v:?}");
        assert_eq!(v.rule.as_deref(), Some("block-ai-crawlers"));
        let v = Req::new("203.0.113.5", ua).eval(&e, "observe");
        assert_eq!(v.action, Action::Observe, "{ua}");
        assert_eq!(v.would, Some(Action::Block(403)));
    }
}

#[test]
fn spoofed_googlebot_is_flagged_real_one_allowed() {
    let e = engine();
    let ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let real = Req::new("66.249.66.1", ua).eval(&e, "default");
    assert_eq!(real.action, Action::Allow, "{real:?}");
    assert_eq!(real.rule.as_deref(), Some("trusted-networks"));
    assert_eq!(real.category, Some(Category::SearchEngine));
    let fake = Req::new("45.77.1.2", ua).eval(&e, "default");
    assert_eq!(fake.action, Action::Block(403), "{fake:?}");
    assert_eq!(fake.rule.as_deref(), Some("spoofed-crawler"));
    assert!(
        fake.reasons
            .iter()
            .any(|r| r.signal == "crawler.spoofed" && r.weight == 150)
    );
}

#[test]
fn generic_words_never_block_alone() {
    let e = engine();
    let vscode = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Code/1.95.3 Chrome/128.0.6613.186 Electron/32.2.5 Safari/537.36";
    let v = Req::new("198.51.100.9", vscode)
        .browser_headers()
        .eval(&e, "default");
    assert!(!matches!(v.action, Action::Block(_)), "{v:?}");
    assert_eq!(v.crawler.as_deref(), Some("Code"));
}

#[test]
fn trap_hit_raises_later_verdicts_for_the_penalty_time() {
    let e = engine();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let before = Req::new("192.0.2.50", ua)
        .browser_headers()
        .path("/art/a.png")
        .eval(&e, "default");
    assert_eq!(before.score, 0);
    let trap = Req::new("192.0.2.50", ua)
        .browser_headers()
        .path(&format!("{}page-2", e.trap_path()))
        .at(2)
        .eval(&e, "default");
    assert!(
        trap.reasons
            .iter()
            .any(|r| r.signal == "behaviour.robots-trap"),
        "{trap:?}"
    );
    let after = Req::new("192.0.2.50", ua)
        .browser_headers()
        .path("/art/b.png")
        .at(30)
        .eval(&e, "default");
    assert_eq!(after.score, 100, "{after:?}");
    assert_eq!(
        after.action,
        Action::Cloak,
        "images for a trapped client are cloaked"
    );
    assert_eq!(after.rule.as_deref(), Some("cloak-images-for-scrapers"));
    // Ten minutes later (default penalty) the client is back to normal.
    let later = Req::new("192.0.2.50", ua)
        .browser_headers()
        .path("/art/c.png")
        .at(2 + 601)
        .eval(&e, "default");
    assert_eq!(later.score, 0, "{later:?}");
}

#[test]
fn images_without_pages_look_like_img2dataset() {
    let e = engine();
    // img2dataset's default UA is a plain old Firefox.
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:72.0) Gecko/20100101 Firefox/72.0";
    let mut last = None;
    for i in 0..25 {
        last = Some(
            Req::new("192.0.2.77", ua)
                .path(&format!("/art/{i}.jpg"))
                .at(1 + i / 10)
                .eval(&e, "default"),
        );
    }
    let v = last.unwrap();
    assert!(
        v.reasons
            .iter()
            .any(|r| r.signal == "behaviour.images-without-pages"),
        "{v:?}"
    );
    assert!(
        v.reasons.iter().any(|r| r.signal == "ua.stale-browser"),
        "{v:?}"
    );
    assert_eq!(v.action, Action::Cloak, "{v:?}");
}

#[test]
fn header_signals_fire_only_when_headers_are_known() {
    let e = engine();
    let ua = BROWSERS[0];
    let mut r = Req::new("192.0.2.60", ua);
    r.headers = Some(BTreeMap::new());
    let v = r.eval(&e, "default");
    assert_eq!(v.score, 65, "{v:?}");
    let v = Req::new("192.0.2.61", ua).eval(&e, "default");
    assert_eq!(v.score, 0, "{v:?}");
}

#[test]
fn quotas_limit_then_recover() {
    let e = engine_with(
        "[policy.default]\n[[policy.default.rule]]\nname = \"tight\"\naction = \"limit\"\nquota = { rate = 60, per = \"minute\", burst = 3, key = \"ip\" }\n",
    );
    let ua = BROWSERS[0];
    for _ in 0..3 {
        let v = Req::new("192.0.2.70", ua).at(5).eval(&e, "default");
        assert_eq!(v.action, Action::Limit);
    }
    let v = Req::new("192.0.2.70", ua).at(5).eval(&e, "default");
    assert_eq!(v.action, Action::Limited);
    let l = v.limit.unwrap();
    assert_eq!(
        (l.quota, l.window, l.remaining, l.retry_after),
        (60, 60, 0, 1)
    );
    // Another client is unaffected; the first recovers a second later.
    assert_eq!(
        Req::new("192.0.2.71", ua).at(5).eval(&e, "default").action,
        Action::Limit
    );
    assert_eq!(
        Req::new("192.0.2.70", ua).at(6).eval(&e, "default").action,
        Action::Limit
    );
}

#[test]
fn user_rules_match_paths_headers_and_networks() {
    let e = engine_with(
        r#"[policy.default]
[[policy.default.rule]]
name = "office"
match = { cidr = ["192.0.2.0/24"] }
action = "allow"
[[policy.default.rule]]
name = "no-hotlinks"
match = { path = ["/art/**"], header_regex = { referer = "^https://evil\\." } }
action = "block"
status = 451
[[policy.default.rule]]
name = "api-tarpit"
match = { path = ["/api/*"], method = ["POST"] }
action = "tarpit"
"#,
    );
    let ua = BROWSERS[0];
    assert_eq!(
        Req::new("192.0.2.1", ua)
            .path("/art/x.png")
            .eval(&e, "default")
            .rule
            .as_deref(),
        Some("office")
    );
    let mut r = Req::new("198.51.100.1", ua)
        .browser_headers()
        .path("/art/a/b.png");
    r.headers
        .as_mut()
        .unwrap()
        .insert("referer".into(), "https://evil.example/".into());
    let v = r.eval(&e, "default");
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Block(451), Some("no-hotlinks"))
    );
    // Header rules never fire without headers (combined logs).
    let v = Req::new("198.51.100.1", ua)
        .path("/art/a/b.png")
        .eval(&e, "default");
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn reverse_dns_verifies_and_unmasks_crawlers() {
    use fixative_rules::Rdns;
    let e = engine();
    let ua = "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)";
    assert!(e.wants_rdns(ua));
    assert!(!e.wants_rdns(BROWSERS[0]));
    let eval = |rdns: Rdns<'_>| {
        let facts = RequestFacts {
            now: Duration::from_secs(1),
            client_ip: ip("5.255.253.10"),
            method: "GET",
            host: "a.test",
            path: "/",
            user_agent: Some(ua),
            headers_known: false,
            header: &fixative_rules::NoHeaders,
            http10: false,
            rdns,
            unix_time: 0,
            known: fixative_rules::Known::default(),
        };
        e.evaluate(&facts, "default")
    };
    // First request: lookup pending, neither verified nor spoofed.
    let v = eval(Rdns::Unknown);
    assert!(
        v.reasons.iter().any(|r| r.signal == "crawler.unverified"),
        "{v:?}"
    );
    assert_ne!(v.rule.as_deref(), Some("spoofed-crawler"));
    // Confirmed under yandex.com: verified and allowed.
    let v = eval(Rdns::Confirmed("5-255-253-10.spider.yandex.com"));
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Allow, Some("trusted-networks"))
    );
    // A name under someone else's domain, or no name: spoofed.
    for r in [Rdns::Confirmed("yandex.com.evil.example"), Rdns::Failed] {
        let v = eval(r);
        assert_eq!(v.rule.as_deref(), Some("spoofed-crawler"), "{r:?}");
    }
    assert!(fixative_rules::name_under(
        "crawl-66-249-66-1.googlebot.com.",
        "googlebot.com"
    ));
    assert!(!fixative_rules::name_under(
        "notgooglebot.com",
        "googlebot.com"
    ));
}

#[test]
fn catalog_files_extend_and_override_the_shipped_catalog() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.toml"),
        "[[crawler]]\nname = \"ArtHarvester\"\noperator = \"Example Corp\"\ncategory = \"ai-training\"\nua = [\"ArtHarvester\"]\nrobots = [\"ArtHarvester\"]\n\n[[crawler]]\nname = \"curl\"\noperator = \"us\"\ncategory = \"monitoring\"\nua = [\"curl\"]\n",
    )
    .unwrap();
    let src = "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\n[detection]\ncatalog_files = [\"extra.toml\"]\n[protector]\nsecret = \"unit-test-watermark-key-0123\"\n";
    let cfg = Config::from_toml(src, "t", Some(dir.path())).unwrap();
    let e = Engine::new(&cfg).unwrap().as_of(TODAY).unwrap();
    let v = Req::new("203.0.113.1", "ArtHarvester/0.3 (+https://example.com)").eval(&e, "default");
    assert_eq!(
        (v.action, v.crawler.as_deref()),
        (Action::Block(403), Some("ArtHarvester"))
    );
    let v = Req::new("203.0.113.1", "curl/8.5.0").eval(&e, "default");
    assert_eq!(v.category, Some(Category::Monitoring));
    // A broken catalog file is a load error, never a silently empty catalog.
    std::fs::write(dir.path().join("extra.toml"), "[[crawler]]\nname = 1\n").unwrap();
    assert!(
        Engine::new(&cfg)
            .unwrap_err()
            .to_string()
            .contains("extra.toml")
    );
}

/// Real user-agent strings as the crawlers send them (operators' docs and
/// public logs), with the catalog entry each must resolve to. Entries not
/// listed here are covered by `every_entry_is_detected_from_a_user_agent_of_its_own`
/// in the catalog module, which builds a product token for every UA token.
const REAL_CRAWLER_UAS: &[(&str, &str)] = &[
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "GPTBot",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot",
        "ChatGPT-User",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; OAI-SearchBot/1.0; +https://openai.com/searchbot",
        "OAI-SearchBot",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        "ClaudeBot",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-User/1.0; +Claude-User@anthropic.com)",
        "Claude-User",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-SearchBot/1.0; +Claude-SearchBot@anthropic.com)",
        "Claude-SearchBot",
    ),
    ("CCBot/2.0 (https://commoncrawl.org/faq/)", "CCBot"),
    (
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Bytespider",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        "PerplexityBot",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Perplexity-User/1.0; +https://perplexity.ai/perplexity-user)",
        "Perplexity-User",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot) Chrome/119.0.6045.214 Safari/537.36",
        "Amazonbot",
    ),
    (
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        "meta-externalagent",
    ),
    (
        "meta-externalfetcher/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        "meta-externalfetcher",
    ),
    (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "facebookexternalhit",
    ),
    (
        "Mozilla/5.0 (compatible; Diffbot/0.1; +http://www.diffbot.com)",
        "Diffbot",
    ),
    (
        "Mozilla/5.0 (compatible; YouBot/1.0; +http://about.you.com/youbot)",
        "YouBot",
    ),
    ("Timpibot/0.8 (+http://www.timpi.io)", "Timpibot"),
    (
        "Mozilla/5.0 (compatible; ImagesiftBot; +imagesift.com)",
        "ImagesiftBot",
    ),
    ("omgili/0.5 +http://omgili.com", "omgili"),
    (
        "Mozilla/5.0 (compatible; AI2Bot/1.0; +https://www.allenai.org/crawler)",
        "AI2Bot",
    ),
    (
        "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "PetalBot",
    ),
    ("Mozilla/5.0 (compatible; GoogleOther)", "GoogleOther"),
    (
        "img2dataset/1.45.0 (https://github.com/rom1504/img2dataset)",
        "img2dataset",
    ),
    ("Scrapy/2.11.2 (+https://scrapy.org)", "Scrapy"),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
    ),
    (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
    ),
    ("Googlebot-Image/1.0", "Googlebot"),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "bingbot",
    ),
    (
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "DuckDuckBot",
    ),
    (
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "YandexBot",
    ),
    (
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "Baiduspider",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "Applebot",
    ),
    ("Twitterbot/1.0", "Twitterbot"),
    (
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Slackbot",
    ),
    (
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "Discordbot",
    ),
    (
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "LinkedInBot",
    ),
    ("TelegramBot (like TwitterBot)", "TelegramBot"),
    ("WhatsApp/2.23.20.0", "WhatsApp"),
    (
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "AhrefsBot",
    ),
    (
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "SemrushBot",
    ),
    (
        "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
        "MJ12bot",
    ),
    (
        "Mozilla/5.0 (compatible; archive.org_bot +http://archive.org/details/archive.org_bot)",
        "ia_archiver",
    ),
    (
        "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "UptimeRobot",
    ),
    ("curl/8.5.0", "curl"),
    ("Wget/1.21.4", "Wget"),
    ("python-requests/2.32.3", "python-requests"),
    ("Python-urllib/3.11", "python-urllib"),
    ("Python/3.12 aiohttp/3.9.5", "aiohttp"),
    ("Go-http-client/2.0", "Go-http-client"),
    ("okhttp/4.12.0", "okhttp"),
    ("axios/1.7.2", "axios"),
    (
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "node-fetch",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        "HeadlessChrome",
    ),
];

#[test]
fn real_crawler_user_agents_resolve_to_their_catalog_entry() {
    let e = engine();
    for (ua, want) in REAL_CRAWLER_UAS {
        let m = e
            .catalog()
            .match_ua(ua)
            .unwrap_or_else(|| panic!("not detected: {ua}"));
        assert_eq!(m.crawler.name, *want, "{ua}");
        // Every one of these presents its name as the client: full matches.
        assert!(!m.weak, "{ua}");
    }
}

/// Passes in policies: the grace budget, `pass` and `automation` matches,
/// a pass skipping a challenge, tarpits never for verified crawlers.
#[test]
fn passes_decide_images_and_challenges() {
    use fixative_rules::pass::{Binding, Flags, Keys, PASS_COOKIE, PassState};
    const SECRET: &str = "unit-test-secret-0123456789";
    let e = engine_with(&format!(
        r#"policy = "p"
[protector]
secret = "{SECRET}"
[challenge]
grace_images = 3
[policy.p]
[[policy.p.rule]]
name = "guard"
match = {{ path = ["/g/**"] }}
action = "challenge"
[[policy.p.rule]]
name = "pit"
match = {{ path = ["/pit/**"] }}
action = "tarpit"
[[policy.p.rule]]
name = "auto"
match = {{ automation = true, image = true }}
action = "cloak"
[[policy.p.rule]]
name = "nopass"
match = {{ image = true, pass = false }}
action = "cloak"
[[policy.p.rule]]
name = "haspass"
match = {{ pass = true }}
action = "observe"
"#
    ));
    let ua = BROWSERS[0];
    let now = 1_800_000_000;
    let keys = Keys::new(SECRET, &[]);
    let me = Binding::of(ip("198.51.100.20"), ua);
    let with = |path: &str, cookie: Option<&str>| {
        let mut r = Req::new("198.51.100.20", ua).browser_headers().path(path);
        if let Some(c) = cookie {
            r.headers
                .as_mut()
                .unwrap()
                .insert("cookie".into(), format!("a=1; {PASS_COOKIE}={c}"));
        }
        let empty = BTreeMap::new();
        let facts = RequestFacts {
            now: r.t,
            client_ip: r.ip,
            method: "GET",
            host: "a.test",
            path: &r.path,
            user_agent: r.ua.as_deref(),
            headers_known: true,
            header: r.headers.as_ref().unwrap_or(&empty),
            http10: false,
            rdns: fixative_rules::Rdns::Unknown,
            unix_time: now,
            known: fixative_rules::Known::default(),
        };
        e.evaluate(&facts, "p")
    };
    // No pass: three images of grace, then protected.
    for left in [2, 1, 0] {
        let v = with("/art/a.png", None);
        assert_eq!(
            (v.action, v.grace_left),
            (Action::Allow, Some(left)),
            "{v:?}"
        );
    }
    let v = with("/art/a.png", None);
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Cloak, Some("nopass"))
    );
    // A valid pass: originals, no grace spent.
    let valid = keys.mint_pass(me, Flags::default(), now, 600).unwrap();
    let v = with("/art/a.png", Some(&valid));
    assert_eq!(v.pass, PassState::Valid);
    assert_eq!(v.grace_left, None);
    assert_eq!(v.rule.as_deref(), Some("haspass"));
    // Automation: protected images; a challenge becomes no wall (cloak).
    let auto = keys.mint_pass(me, Flags::AUTOMATION, now, 600).unwrap();
    let v = with("/art/a.png", Some(&auto));
    assert_eq!((v.action, v.rule.as_deref()), (Action::Cloak, Some("auto")));
    let v = with("/g/page", Some(&auto));
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Cloak, Some("guard"))
    );
    // Challenges: without a pass, the interstitial; a pass (JS or no-JS)
    // skips the rule.
    assert_eq!(with("/g/page", None).action, Action::Challenge(403));
    let v = with("/g/page", Some(&valid));
    assert_eq!(v.rule.as_deref(), Some("haspass"));
    let nojs = keys.mint_pass(me, Flags::NOJS, now, 600).unwrap();
    let v = with("/g/page", Some(&nojs));
    assert_eq!((v.action, v.rule.as_deref()), (Action::Allow, None));
    // A no-JS pass does not unlock originals.
    let v = with("/art/b.png", Some(&nojs));
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Cloak, Some("nopass"))
    );
    // Invalid passes count as none.
    let expired = keys
        .mint_pass(me, Flags::default(), now - 7200, 600)
        .unwrap();
    let v = with("/g/page", Some(&expired));
    assert_eq!(v.action, Action::Challenge(403));
    assert_eq!(v.pass.as_str(), "expired");
    // The tarpit: for an unverified client yes, for a verified crawler a
    // plain refusal.
    assert_eq!(with("/pit/x", None).action, Action::Tarpit(403));
    let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let v = Req::new("66.249.66.1", google).path("/pit/x").eval(&e, "p");
    assert_eq!(v.action, Action::Block(403), "{v:?}");
}

/// The default policy's pass rules leave verified search engines and link
/// previews alone: their images stay original past any grace budget.
#[test]
fn search_engines_and_link_previews_are_not_affected_by_passes() {
    let e = engine();
    let preview = "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)";
    let google = "Googlebot-Image/1.0";
    for i in 0..40 {
        let v = Req::new("198.51.100.77", preview)
            .path(&format!("/art/{i}.jpg"))
            .eval(&e, "default");
        assert_ne!(v.action, Action::Cloak, "{v:?}");
        assert_eq!(v.rule.as_deref(), Some("previews-and-search"));
    }
    for i in 0..40 {
        let v = Req::new("66.249.66.1", google)
            .path(&format!("/art/{i}.jpg"))
            .eval(&e, "default");
        assert_eq!(v.action, Action::Allow, "{v:?}");
        assert_eq!(v.rule.as_deref(), Some("trusted-networks"));
    }
    // A browser without a pass, by contrast: 24 originals, then previews.
    let ua = BROWSERS[0];
    let actions: Vec<Action> = (0..26)
        .map(|i| {
            Req::new("198.51.100.78", ua)
                .browser_headers()
                .path(&format!("/art/{i}.jpg"))
                .eval(&e, "default")
                .action
        })
        .collect();
    assert!(
        actions[..24].iter().all(|a| *a != Action::Cloak),
        "{actions:?}"
    );
    assert_eq!(&actions[24..], &[Action::Cloak, Action::Cloak]);
}

/// Two engines of a fleet, their mirrors joined by hand (what the proxy's
/// Redis link does): a trap hit on one penalises the client and revokes its
/// pass on the other; a ban blocks everywhere; a limit rule defers to the
/// fleet's quota and keeps its own decision without an answer.
#[test]
fn fleet_mirrors_carry_penalties_revocations_bans_and_quotas() {
    use fixative_rules::fleet::{Ban, Fleet};
    use fixative_rules::pass::{Binding, Flags, Keys, PASS_COOKIE, PassState};
    use fixative_rules::state::LimitOutcome;
    use std::sync::Arc;
    const SECRET: &str = "unit-test-secret-0123456789";
    let src = format!(
        r#"[[site]]
name = "a"
hosts = ["a.test"]
upstreams = ["127.0.0.1:1"]
policy = "p"
[protector]
secret = "{SECRET}"
[state]
backend = "redis"
url = "redis://127.0.0.1:6379"
[policy.p]
[[policy.p.rule]]
name = "lim"
match = {{ path = ["/api/**"] }}
action = "limit"
quota = {{ rate = 60, per = "minute", burst = 5 }}
[[policy.p.rule]]
name = "shadow-lim"
match = {{ path = ["/shadow/**"] }}
action = "limit"
mode = "observe"
quota = {{ rate = 60, per = "minute", burst = 5 }}
"#
    );
    let cfg = Config::from_toml(&src, "t", None).unwrap();
    let (fa, fb) = (Arc::new(Fleet::new(&cfg)), Arc::new(Fleet::new(&cfg)));
    assert!(fa.shared());
    let a = Engine::with_fleet(&cfg, fa.clone())
        .unwrap()
        .as_of(TODAY)
        .unwrap();
    let b = Engine::with_fleet(&cfg, fb.clone())
        .unwrap()
        .as_of(TODAY)
        .unwrap();
    let carry = || {
        for e in fa.take_batch().events {
            fb.apply(&e);
        }
    };
    let ua = BROWSERS[0];
    let now = 1_800_000_000;
    let pass = Keys::new(SECRET, &[])
        .mint_pass(
            Binding::of(ip("198.51.100.20"), ua),
            Flags::default(),
            now,
            3600,
        )
        .unwrap();
    let eval = |e: &Engine, client: &str, path: &str| {
        let mut r = Req::new(client, ua).browser_headers().path(path);
        r.headers
            .as_mut()
            .unwrap()
            .insert("cookie".into(), format!("{PASS_COOKIE}={pass}"));
        let facts = RequestFacts {
            now: r.t,
            client_ip: r.ip,
            method: "GET",
            host: "a.test",
            path: &r.path,
            user_agent: r.ua.as_deref(),
            headers_known: true,
            header: r.headers.as_ref().unwrap(),
            http10: false,
            rdns: fixative_rules::Rdns::Unknown,
            unix_time: now,
            known: fixative_rules::Known::default(),
        };
        e.evaluate(&facts, "p")
    };
    assert_eq!(eval(&b, "198.51.100.20", "/").pass, PassState::Valid);
    // The trap on A: penalised and its pass revoked there…
    let v = eval(&a, "198.51.100.20", "/gallery/archive/full-resolution/x");
    assert_eq!(
        v.pass,
        PassState::Invalid(fixative_rules::pass::Invalid::Revoked)
    );
    // …and on B once the events arrive.
    carry();
    let v = eval(&b, "198.51.100.20", "/");
    assert_eq!(
        v.pass,
        PassState::Invalid(fixative_rules::pass::Invalid::Revoked)
    );
    assert!(
        v.reasons
            .iter()
            .any(|r| r.signal == "behaviour.robots-trap"),
        "{v:?}"
    );
    // A ban written on A blocks on B.
    fa.publish(fixative_rules::fleet::Event::Ban(Ban {
        net: "203.0.113.0/24".parse().unwrap(),
        until: now + 60,
        reason: "abuse".into(),
    }));
    carry();
    let v = eval(&b, "203.0.113.5", "/");
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Block(403), Some("ban"))
    );
    assert!(
        v.reasons
            .iter()
            .any(|r| r.signal == "fleet.ban" && r.detail == "abuse")
    );
    assert_eq!(eval(&b, "203.0.113.5", "/").action, Action::Block(403));
    assert_eq!(eval(&b, "203.0.112.5", "/").action, Action::Allow);
    // Quotas: a client far from the limit (under a quarter of the burst
    // over the fleet's recent windows) is admitted without asking; the
    // next request asks the fleet and carries that admission with it.
    let v = eval(&a, "192.0.2.1", "/api/x");
    assert!(v.shared_limit.is_none(), "{v:?}");
    assert_eq!(v.action, Action::Limit);
    let mut v = eval(&a, "192.0.2.1", "/api/x");
    let s = v.shared_limit.clone().expect("marked for the fleet");
    assert_eq!(
        (s.emission_us, s.burst, s.observe, s.deferred),
        (1_000_000, 5, false, 1)
    );
    assert_eq!(s.key, "p/lim/192.0.2.1");
    let refused = LimitOutcome {
        allowed: false,
        remaining: 0,
        retry_after: 1,
        reset: 5,
    };
    Engine::settle_limit(&mut v, refused);
    assert_eq!(v.action, Action::Limited);
    assert!(v.shared_limit.is_none());
    assert_eq!(v.limit.unwrap().retry_after, 1);
    // In observe mode the refusal is only reported.
    let mut v = eval(&a, "192.0.2.1", "/shadow/x");
    Engine::settle_limit(&mut v, refused);
    assert_eq!(
        (v.action, v.would),
        (Action::Observe, Some(Action::Limited))
    );
    // Refused locally: decided without the fleet.
    for _ in 0..6 {
        eval(&a, "192.0.2.2", "/api/y");
    }
    let v = eval(&a, "192.0.2.2", "/api/y");
    assert_eq!(v.action, Action::Limited);
    assert!(v.shared_limit.is_none());
}

/// What the proxy passes in [`fixative_rules::Known`] (the request kind and
/// the user agent's class, worked out before it asks for a verdict) changes
/// nothing: two engines, one told and one working it out itself, give the
/// same verdicts to the same sequence of requests (state builds up alike:
/// behaviour, quotas, penalties).
#[test]
fn known_facts_give_the_verdicts_the_engine_works_out_itself() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunConfig, TestRunner};
    let mut uas: Vec<String> = BROWSERS.iter().map(|s| s.to_string()).collect();
    uas.extend(REAL_CRAWLER_UAS.iter().map(|(_, ua)| ua.to_string()));
    uas.extend(["", " ", "curl/8.5.0", "python-requests/2.32", "Mozilla/5.0"].map(String::from));
    let paths = [
        "/",
        "/gallery/",
        "/a.jpg",
        "/b.PNG?x=1",
        "/c.css",
        "/page.html",
        "/img?f=1.webp",
        "/d/e.svg#x",
        "/robots.txt",
    ];
    let accepts = [
        None,
        Some("image/avif,image/webp,*/*"),
        Some("text/html,*/*;q=0.8"),
    ];
    let step = (
        0..uas.len(),
        0..paths.len(),
        0..accepts.len(),
        0u8..4,
        any::<String>(),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(RunConfig::with_cases(64));
    runner
        .run(&proptest::collection::vec(step, 1..40), |steps| {
            let (told, alone) = (engine(), engine());
            for (k, (u, p, a, client, random_ua, use_random)) in steps.into_iter().enumerate() {
                let ua = if use_random {
                    random_ua.as_str()
                } else {
                    uas[u].as_str()
                };
                let mut headers = BTreeMap::new();
                if let Some(a) = accepts[a] {
                    headers.insert("accept".to_string(), a.to_string());
                }
                let facts = |known| RequestFacts {
                    now: Duration::from_millis(1_000 + 250 * k as u64),
                    client_ip: ip(&format!("198.51.100.{client}")),
                    method: "GET",
                    host: "a.test",
                    path: paths[p],
                    user_agent: Some(ua),
                    headers_known: true,
                    header: &headers,
                    http10: false,
                    rdns: fixative_rules::Rdns::Unknown,
                    unix_time: 1_800_000_000 + k as u64,
                    known,
                };
                let known = fixative_rules::Known {
                    kind: Some(fixative_rules::request_kind(paths[p], accepts[a])),
                    user_agent: Some(told.classify_ua(ua)),
                };
                let v1 = told.evaluate(&facts(known), "default");
                let v2 = alone.evaluate(&facts(fixative_rules::Known::default()), "default");
                prop_assert_eq!(v1, v2);
            }
            Ok(())
        })
        .unwrap();
}
