//! One preference, every format: a site with three `[[site.preference]]`
//! entries (nested paths for precedence, a `$` pattern, an origin header
//! naming a preference), each format read back by an independent reader
//! (robots.txt and ai.txt by `texting_robots`, the RSL licence by
//! `roxmltree`, XMP by exiftool, tdmrep.json and `Content-Usage` lines by a
//! matcher written here) and checked against the usage each path should
//! have.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Fixative, client, site};

/// (train_ai, search, ai_input) allowed.
type Usage = (bool, bool, bool);

const DEFAULT: Usage = (false, true, false);
const LICENSED: Usage = (true, true, true);
const PRIVATE: Usage = (false, false, false);
const QUOTES: Usage = (false, true, true);

const PREFS: &str = r#"directives = { preference_header = "x-ai-preference" }

[[site.preference]]
name = "licensed"
paths = ["/gallery/licensed/"]
train_ai = "allow"
ai_input = "allow"

[[site.preference]]
name = "private"
paths = ["/gallery/licensed/drafts/", "/*.raw.jpg$"]
train_ai = "deny"
search = "deny"

[[site.preference]]
name = "quotes"
paths = ["/press/"]
ai_input = "allow"
"#;

/// Paths and the preference the configuration gives each (by path alone).
const PATHS: &[(&str, &str, Usage)] = &[
    ("/about.html", "default", DEFAULT),
    ("/gallery/licensed/a.html", "licensed", LICENSED),
    ("/gallery/licensed/a.jpg", "licensed", LICENSED),
    ("/gallery/licensed/drafts/b.jpg", "private", PRIVATE),
    ("/gallery/licensed/drafts/", "private", PRIVATE),
    ("/gallery/other/c.raw.jpg", "private", PRIVATE),
    ("/gallery/other/c.raw.jpg.html", "default", DEFAULT),
    ("/press/d.html", "quotes", QUOTES),
    ("/press/e.jpg", "quotes", QUOTES),
];

fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

async fn origin() -> SocketAddr {
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let path = req.uri().path().to_string();
        let mut h = HeaderMap::new();
        if matches!(
            path.as_str(),
            "/robots.txt" | "/ai.txt" | "/.well-known/tdmrep.json" | "/license.xml"
        ) {
            return StatusCode::NOT_FOUND.into_response();
        }
        // A CMS's per-post setting: post 7 (its page, its image and the
        // image's prepared variant) is licensed.
        if path.starts_with("/posts/7.") {
            h.insert("x-ai-preference", "licensed".parse().unwrap());
        }
        if path.ends_with(".jpg") {
            h.insert("content-type", "image/jpeg".parse().unwrap());
            return (h, jpeg()).into_response();
        }
        h.insert("content-type", "text/html; charset=utf-8".parse().unwrap());
        let page = "<!doctype html><html><head><title>t</title></head><body>art</body></html>";
        (h, page).into_response() as Response
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

/// robots.txt-style pattern → does it match (prefix, `*`, final `$`):
/// written here, independently of Fixative's matcher.
fn robots_match(pattern: &str, path: &str) -> bool {
    let (body, anchored) = match pattern.strip_suffix('$') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let re: Vec<String> = body.split('*').map(regex_escape).collect();
    let re = format!("^{}{}", re.join(".*"), if anchored { "$" } else { "" });
    regex_lite(&re, path)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn regex_lite(re: &str, s: &str) -> bool {
    regex::Regex::new(re).unwrap().is_match(s)
}

fn tokens(v: &str) -> Vec<String> {
    v.split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Members of a `Content-Usage` value: key → allowed.
fn usage_members(v: &str) -> Vec<(String, bool)> {
    v.split(',')
        .filter_map(|m| m.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim() == "y"))
        .collect()
}

fn exiftool_data_mining(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("img.jpg");
    std::fs::write(&p, bytes).unwrap();
    let out = Command::new("exiftool")
        .args(["-s3", "-XMP-plus:DataMining"])
        .arg(&p)
        .output()
        .expect("exiftool is needed: `./dev test` installs it (libimage-exiftool-perl)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn dmi(u: Usage) -> &'static str {
    match u {
        (true, ..) => "http://ns.useplus.org/ldf/vocab/DMI-ALLOWED",
        (false, true, _) => "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING",
        (false, false, _) => "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED",
    }
}

/// The response-level formats: headers, HTML meta and link, XMP.
async fn check_response(c: &reqwest::Client, fx: &Fixative, path: &str, u: Usage) {
    let r = c
        .get(fx.url(path))
        .header("host", "art.test")
        .header("accept", "text/html,image/jpeg")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let h = r.headers().clone();
    assert!(
        h.get("x-ai-preference").is_none(),
        "{path}: the origin's preference header leaked"
    );
    let xrt: Vec<String> = h
        .get_all("x-robots-tag")
        .iter()
        .flat_map(|v| tokens(v.to_str().unwrap()))
        .collect();
    let verdict = h
        .get("x-fixative-verdict")
        .map(|v| v.to_str().unwrap_or("").to_string());
    assert_eq!(
        xrt.contains(&"noai".into()),
        !u.0,
        "{path}: X-Robots-Tag {xrt:?} ({verdict:?})"
    );
    assert_eq!(
        xrt.contains(&"noimageai".into()),
        !u.0,
        "{path}: X-Robots-Tag {xrt:?}"
    );
    assert_eq!(
        xrt.contains(&"noindex".into()),
        !u.1,
        "{path}: X-Robots-Tag {xrt:?}"
    );
    let cu = usage_members(h["content-usage"].to_str().unwrap());
    assert!(
        cu.contains(&("train-ai".into(), u.0)),
        "{path}: Content-Usage {cu:?}"
    );
    assert!(
        cu.contains(&("search".into(), u.1)),
        "{path}: Content-Usage {cu:?}"
    );
    assert_eq!(h["tdm-reservation"], if u.0 { "0" } else { "1" }, "{path}");
    let link = h["link"].to_str().unwrap();
    assert!(
        link.contains("</license.xml>")
            && link.contains("rel=\"license\"")
            && link.contains("application/rsl+xml"),
        "{path}: Link {link}"
    );
    let ctype = h["content-type"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    if ctype.starts_with("text/html") {
        let page = String::from_utf8_lossy(&body);
        let doc = roxmltree_html_meta(&page);
        assert_eq!(
            doc.robots.iter().any(|t| t == "noai"),
            !u.0,
            "{path}: meta robots {:?}",
            doc.robots
        );
        assert_eq!(doc.robots.iter().any(|t| t == "noindex"), !u.1, "{path}");
        assert_eq!(
            doc.tdm.as_deref(),
            Some(if u.0 { "0" } else { "1" }),
            "{path}"
        );
        assert!(
            page.contains(
                "<link rel=\"license\" type=\"application/rsl+xml\" href=\"/license.xml\">"
            ),
            "{path}: {page}"
        );
    } else {
        assert_eq!(exiftool_data_mining(&body), dmi(u), "{path}: XMP");
    }
}

struct Meta {
    robots: Vec<String>,
    tdm: Option<String>,
}

/// The robots and tdm-reservation meta tags of a page (simple attribute
/// scan: the test pages are Fixative's output of a tiny document).
fn roxmltree_html_meta(page: &str) -> Meta {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let rest = tag.get(at..)?;
        Some(rest[..rest.find('"')?].to_string())
    };
    let mut m = Meta {
        robots: Vec::new(),
        tdm: None,
    };
    for tag in page.split('<').filter(|t| t.starts_with("meta ")) {
        match attr(tag, "name").as_deref() {
            Some("robots") => m.robots = tokens(&attr(tag, "content").unwrap_or_default()),
            Some("tdm-reservation") => m.tdm = attr(tag, "content"),
            _ => {}
        }
    }
    m
}

async fn get_text(c: &reqwest::Client, fx: &Fixative, path: &str) -> (String, String) {
    let r = c
        .get(fx.url(path))
        .header("host", "art.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    (ctype, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_agrees_with_the_preference_of_each_path() {
    let origin = origin().await;
    let fx = Fixative::start(
        "debug_headers = true",
        &site("art", &["art.test"], &[origin], PREFS),
    );
    let c = client();

    // Response-level formats, path by path.
    for (path, _, u) in PATHS {
        check_response(&c, &fx, path, *u).await;
    }
    // The origin names post 7's preference: its response carries it.
    check_response(&c, &fx, "/posts/7.html", LICENSED).await;
    check_response(&c, &fx, "/posts/7.jpg", LICENSED).await;
    check_response(&c, &fx, "/posts/8.html", DEFAULT).await;

    // robots.txt: AI-training tokens follow train_ai, AI search and
    // assistants ai_input, every other agent search.
    let (_, robots) = get_text(&c, &fx, "/robots.txt").await;
    let gpt = texting_robots::Robot::new("GPTBot", robots.as_bytes()).unwrap();
    let perplexity = texting_robots::Robot::new("PerplexityBot", robots.as_bytes()).unwrap();
    let other = texting_robots::Robot::new("SomeSearchEngine", robots.as_bytes()).unwrap();
    for (path, _, u) in PATHS {
        assert_eq!(gpt.allowed(path), u.0, "robots.txt GPTBot {path}\n{robots}");
        assert_eq!(
            perplexity.allowed(path),
            u.2,
            "robots.txt PerplexityBot {path}\n{robots}"
        );
        assert_eq!(other.allowed(path), u.1, "robots.txt * {path}\n{robots}");
    }
    // Content-Usage lines of the * group: the longest path wins; the
    // line without a path is the site's.
    let star = robots.split("User-agent: *\n").nth(1).unwrap();
    let lines: Vec<(Option<&str>, &str)> = star
        .lines()
        .filter_map(|l| l.strip_prefix("Content-Usage: "))
        .map(|v| match v.split_once(' ') {
            Some((p, rest)) if p.starts_with('/') || p.starts_with('*') => (Some(p), rest),
            _ => (None, v),
        })
        .collect();
    for (path, _, u) in PATHS {
        let best = lines
            .iter()
            .filter(|(p, _)| p.is_some_and(|p| robots_match(p, path)))
            .max_by_key(|(p, _)| p.map_or(0, str::len))
            .or_else(|| lines.iter().find(|(p, _)| p.is_none()))
            .unwrap();
        let m = usage_members(best.1);
        assert!(
            m.contains(&("train-ai".into(), u.0)) && m.contains(&("search".into(), u.1)),
            "{path}: {best:?}"
        );
    }
    assert!(
        star.contains("Content-Signal: search=yes, ai-input=no, ai-train=no\n"),
        "{robots}"
    );
    let license_line = format!("License: http://{}/license.xml", "art.test");
    assert!(
        robots.lines().any(|l| l == license_line),
        "robots.txt has no {license_line:?}:\n{robots}"
    );

    // tdmrep.json: the first matching rule applies.
    let (ctype, tdm) = get_text(&c, &fx, "/.well-known/tdmrep.json").await;
    assert!(ctype.starts_with("application/json"));
    let rules: Vec<serde_json::Value> = serde_json::from_str(&tdm).unwrap();
    for (path, _, u) in PATHS {
        let rule = rules
            .iter()
            .find(|r| robots_match(r["location"].as_str().unwrap(), path))
            .unwrap();
        assert_eq!(
            rule["tdm-reservation"],
            if u.0 { 0 } else { 1 },
            "tdmrep {path}: {tdm}"
        );
    }

    // ai.txt (robots.txt grammar): training.
    let (_, ai) = get_text(&c, &fx, "/ai.txt").await;
    let spawning = texting_robots::Robot::new("img2dataset", ai.as_bytes()).unwrap();
    for (path, _, u) in PATHS {
        assert_eq!(spawning.allowed(path), u.0, "ai.txt {path}\n{ai}");
    }

    // The RSL licence: the most specific <content> decides.
    let (ctype, xml) = get_text(&c, &fx, "/license.xml").await;
    assert_eq!(ctype, "application/rsl+xml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "rsl");
    assert_eq!(
        root.tag_name().namespace(),
        Some("https://rslstandard.org/rsl")
    );
    let contents: Vec<_> = root
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            assert_eq!(n.tag_name().name(), "content");
            let url = n.attribute("url").unwrap().to_string();
            let license = n.children().find(|c| c.has_tag_name("license")).unwrap();
            let list = |tag: &str| -> Vec<String> {
                license
                    .children()
                    .filter(|c| c.has_tag_name(tag))
                    .inspect(|c| assert_eq!(c.attribute("type"), Some("usage")))
                    .flat_map(|c| tokens(c.text().unwrap_or("")))
                    .collect()
            };
            (url, list("permits"), list("prohibits"))
        })
        .collect();
    assert_eq!(contents.last().unwrap().0, "/");
    for (path, _, u) in PATHS {
        let (_, permits, prohibits) = contents
            .iter()
            .filter(|(url, ..)| robots_match(url, path))
            .max_by_key(|(url, ..)| url.len())
            .unwrap();
        for (token, allowed) in [("ai-train", u.0), ("search", u.1), ("ai-input", u.2)] {
            assert_eq!(
                permits.contains(&token.to_string()),
                allowed,
                "RSL {path} {token}\n{xml}"
            );
            assert_eq!(
                prohibits.contains(&token.to_string()),
                !allowed,
                "RSL {path} {token}\n{xml}"
            );
        }
    }

    // The access log names the preference that applied.
    let log = fx.access_log_lines(PATHS.len() + 7);
    let pref_of = |path: &str| {
        log.iter()
            .find(|l| l["path"] == path)
            .map(|l| l["preference"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    for (path, name, _) in PATHS {
        assert_eq!(pref_of(path), *name, "access log {path}");
    }
    assert_eq!(pref_of("/posts/7.html"), "licensed");
    assert_eq!(pref_of("/posts/8.html"), "default");

    // explain says the same.
    let explain = |path: &str, json: bool| {
        let mut cmd = Command::new(common::bin());
        cmd.args(["explain", "--config"])
            .arg(&fx.config_path)
            .args([
                "--ua",
                "GPTBot/1.2",
                "--ip",
                "192.0.2.1",
                "--host",
                "art.test",
                "--path",
                path,
            ]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = explain("/gallery/licensed/drafts/x.jpg", true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["preference"]["name"], "private");
    assert_eq!(v["preference"]["train_ai"], "deny");
    assert_eq!(v["preference"]["search"], "deny");
    let out = explain("/press/q.html", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("usage:    preference quotes: train_ai deny, search allow, ai_input allow"),
        "{text}"
    );
}

/// An origin's own licence is served as it is; bad preference settings are
/// named with key and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_preferences_are_named_with_key_and_line() {
    let origin: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cfg = format!(
        "{}\n[protector]\nsecret = \"{}\"\n",
        site(
            "art",
            &["art.test"],
            &[origin],
            "[[site.preference]]\nname = \"a\"\npaths = [\"gallery/\", \"/x/\"]\ntrain_ai = \"maybe\"\n\n[[site.preference]]\nname = \"a\"\npaths = [\"/\", \"/x/\"]\n"
        ),
        common::TEST_SECRET
    );
    let err = fixative_config::Config::from_toml(&cfg, "t.toml", None)
        .unwrap_err()
        .to_string();
    for want in [
        "site[0].preference[0].paths[0]: \"gallery/\" must start with / (or *)",
        "site[0].preference[0].train_ai: \"maybe\" is not \"allow\" or \"deny\"",
        "site[0].preference[1].name: \"a\" is already the name of another preference",
        "site[0].preference[1].paths[0]: \"/\" covers the whole site",
        "site[0].preference[1].paths[1]: \"/x/\" is already a path of preference[0]",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(err.contains("(line "), "{err}");
}

/// An origin's own RSL licence is served as it is, and a page that already
/// announces a licence gets no second `Link`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_own_licence_is_kept() {
    const OWN: &str = "<rsl xmlns=\"https://rslstandard.org/rsl\"><content url=\"/\" server=\"https://license.example/\"><license><permits type=\"usage\">ai-train</permits><payment type=\"purchase\"><amount currency=\"USD\">10</amount></payment></license></content></rsl>";
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let mut h = HeaderMap::new();
        if req.uri().path() == "/license.xml" {
            h.insert("content-type", "application/rsl+xml".parse().unwrap());
            return (h, OWN).into_response();
        }
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert(
            "link",
            "<https://license.example/terms>; rel=\"license\""
                .parse()
                .unwrap(),
        );
        (h, "hello").into_response()
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let fx = Fixative::start("", &site("own", &["own.test"], &[addr], ""));
    let c = client();
    let r = c
        .get(fx.url("/license.xml"))
        .header("host", "own.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), OWN);
    let r = c
        .get(fx.url("/page"))
        .header("host", "own.test")
        .send()
        .await
        .unwrap();
    let links: Vec<_> = r.headers().get_all("link").iter().collect();
    assert_eq!(links.len(), 1, "{links:?}");
}
