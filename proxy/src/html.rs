//! Streaming HTML rewrite: no-train `<meta>` tags and the hidden robots.txt
//! trap link, injected chunk by chunk with lol_html. The page is never
//! buffered whole; an existing robots meta is merged, not duplicated.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use lol_html::html_content::ContentType;
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, Selector, end};

/// Parser memory cap per response (lol_html buffers only partial tokens).
pub const MAX_REWRITER_MEMORY: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    robots_seen: bool,
    tdm_seen: bool,
    metas_done: bool,
    link_done: bool,
}

/// What to inject.
#[derive(Debug, Clone, Default)]
pub struct Injection {
    /// Robots directives for the meta tag (e.g. `noai`, `noimageai`).
    pub robots: Vec<String>,
    /// Add `<meta name="tdm-reservation" content="1">` (`true`: rights
    /// reserved, content `1`; `false`: not reserved, content `0`).
    pub tdm: Option<bool>,
    /// `tdm-policy` URL.
    pub tdm_policy: Option<String>,
    /// The RSL licence to announce with `<link rel="license">`.
    pub license: Option<String>,
    /// Trap path for the hidden link.
    pub trap_path: Option<String>,
    /// The tags as written into a page with no robots or TDM meta of its
    /// own (the usual case), built on first use and kept with the
    /// injection (one per site and configuration), not per page.
    pub prebuilt: Prebuilt,
}

/// See [`Injection::prebuilt`]. Derived from the injection's other fields,
/// so a clone (whose fields may then change) starts empty.
#[derive(Debug, Default)]
pub struct Prebuilt(OnceLock<Tags>);

impl Clone for Prebuilt {
    fn clone(&self) -> Prebuilt {
        Prebuilt::default()
    }
}

#[derive(Debug)]
struct Tags {
    metas: String,
    trap: String,
}

impl Injection {
    fn prebuilt(&self) -> &Tags {
        self.prebuilt.0.get_or_init(|| Tags {
            metas: metas(self, None, &State::default()),
            trap: trap_link(self),
        })
    }

    /// The hidden trap link (empty without a trap path).
    fn trap_html(&self) -> &str {
        &self.prebuilt().trap
    }

    /// Calls `put` with the tags for the head, in order: what
    /// [`metas`] writes, from the prebuilt tags when the page has neither
    /// meta of its own.
    fn put_metas(&self, script: Option<&str>, st: &State, mut put: impl FnMut(&str)) {
        if !st.robots_seen && !st.tdm_seen {
            if let Some(s) = script {
                put(s);
            }
            put(&self.prebuilt().metas);
        } else {
            put(&metas(self, script, st));
        }
    }

    /// What a site's directives `d` inject (the trap link to `trap_path`
    /// when `d.trap_link`); built once per configuration and shared.
    pub fn for_site(d: &fixative_config::Directives, trap_path: &str) -> Injection {
        Injection {
            robots: if d.html_meta {
                d.x_robots_tag.clone()
            } else {
                Vec::new()
            },
            tdm: (d.html_meta && d.tdm_reservation).then_some(!d.usage.train_ai),
            tdm_policy: d.tdm_policy.clone(),
            license: (d.html_meta && d.rsl).then(|| crate::directives::LICENSE_PATH.to_string()),
            trap_path: d.trap_link.then(|| trap_path.to_string()),
            prebuilt: Prebuilt::default(),
        }
    }
}

/// Appends `s` to `out` as an attribute value: `&`, `"` and `<` escaped.
fn push_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            c => out.push(c),
        }
    }
}

/// The tags that go into the head: the check script, the robots and TDM
/// metas the page lacks, the licence link. One string, written once.
fn metas(inj: &Injection, script: Option<&str>, st: &State) -> String {
    let mut s = String::with_capacity(320 + script.map_or(0, str::len));
    if let Some(tag) = script {
        s.push_str(tag);
    }
    if !st.robots_seen && !inj.robots.is_empty() {
        s.push_str("<meta name=\"robots\" content=\"");
        for (i, t) in inj.robots.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            push_attr(&mut s, t);
        }
        s.push_str("\">");
    }
    if let Some(reserved) = inj.tdm
        && !st.tdm_seen
    {
        s.push_str(if reserved {
            "<meta name=\"tdm-reservation\" content=\"1\">"
        } else {
            "<meta name=\"tdm-reservation\" content=\"0\">"
        });
        if let Some(p) = inj.tdm_policy.as_ref().filter(|_| reserved) {
            s.push_str("<meta name=\"tdm-policy\" content=\"");
            push_attr(&mut s, p);
            s.push_str("\">");
        }
    }
    if let Some(href) = &inj.license {
        s.push_str("<link rel=\"license\" type=\"application/rsl+xml\" href=\"");
        push_attr(&mut s, href);
        s.push_str("\">");
    }
    s
}

fn trap_link(inj: &Injection) -> String {
    match &inj.trap_path {
        // Off-screen, hidden from assistive technology and keyboard focus;
        // only a crawler that ignores robots.txt follows it.
        Some(p) => {
            let mut s = String::with_capacity(200 + p.len());
            s.push_str("<a href=\"");
            push_attr(&mut s, p);
            s.push_str(
                "\" rel=\"nofollow\" aria-hidden=\"true\" tabindex=\"-1\" \
style=\"position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden\">archive</a>",
            );
            s
        }
        None => String::new(),
    }
}

type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// The selectors, parsed once (lol_html's `element!` parses its selector
/// for every rewriter, i.e. every response). `meta[name]`, not the two
/// names that matter (`meta[name="robots" i], …`): lol_html compiles the
/// selectors for every rewriter, and that list cost ~1 µs more per page
/// (benches/html.rs: new rewriter 2.3 → 3.3 µs, the 60-tag head 16.9 →
/// 22.0 µs) than the handler's look at each named meta saves.
static SELECTORS: LazyLock<Option<[Selector; 3]>> = LazyLock::new(|| {
    Some([
        "meta[name]".parse().ok()?,
        "head".parse().ok()?,
        "body".parse().ok()?,
    ])
});

/// One response's rewriter.
pub struct HtmlInjector {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
    state: Arc<Mutex<State>>,
    /// Whether `<body` has appeared in the text fed so far: from there
    /// on the parser is fed up to each `>` (see [`HtmlInjector::write`]).
    body_seen: bool,
    /// The last bytes fed before that, for a `<body` cut between chunks:
    /// the last `tail_len` bytes of `tail`.
    tail: [u8; 4],
    tail_len: usize,
}

impl HtmlInjector {
    /// A rewriter for a document in `charset` (from Content-Type), or
    /// `None` when the charset is not ASCII-compatible (UTF-16…): such
    /// pages pass through untouched. `script`: the check script's tag,
    /// added to the head.
    pub fn new(
        inj: Arc<Injection>,
        script: Option<&'static str>,
        charset: Option<&str>,
    ) -> Option<HtmlInjector> {
        let encoding = match charset {
            Some(label) => encoding_rs::Encoding::for_label(label.trim().as_bytes())?,
            None => encoding_rs::UTF_8,
        };
        let encoding = AsciiCompatibleEncoding::new(encoding)?;
        let [meta_sel, head_sel, body_sel] = SELECTORS.as_ref()?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(State::default()));
        let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state.clone());
        let (i1, i2, i3, i4) = (inj.clone(), inj.clone(), inj.clone(), inj);
        let settings = Settings::new_send()
            .with_encoding(encoding)
            // Off: a charset named only in a `<meta>` is not followed.
            // Every byte that makes HTML syntax is ASCII in an
            // ASCII-compatible encoding, untouched tokens leave as they
            // came, and what this rewriter reads and writes is ASCII (a
            // robots `content` with other bytes is left alone, below), so
            // the output is the same; the handler lol_html adds for it
            // cost ~1.3 µs of the ~12 µs a page takes (benches/html.rs).
            .with_adjust_charset_on_meta_tag(false)
            .with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(MAX_REWRITER_MEMORY)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            )
            .append_element_content_handler((
                Cow::Borrowed(meta_sel),
                ElementContentHandlers::default().element(
                    move |el: &mut lol_html::send::Element<'_, '_>| {
                        let name = el
                            .get_attribute("name")
                            .unwrap_or_default()
                            .to_ascii_lowercase();
                        let Ok(mut st) = s1.lock() else { return Ok(()) };
                        if name == "robots" {
                            let content = el.get_attribute("content").unwrap_or_default();
                            if !content.is_ascii() {
                                // Not ASCII (or not in the encoding it was
                                // read in): left as it is; our own tag
                                // follows in the head.
                                return Ok(());
                            }
                            st.robots_seen = true;
                            let have: Vec<String> = content
                                .split(',')
                                .map(|t| t.trim().to_ascii_lowercase())
                                .collect();
                            let missing: Vec<&str> = i1
                                .robots
                                .iter()
                                .filter(|t| !have.contains(&t.to_ascii_lowercase()))
                                .map(String::as_str)
                                .collect();
                            if !missing.is_empty() {
                                let merged = if content.trim().is_empty() {
                                    missing.join(", ")
                                } else {
                                    format!("{}, {}", content.trim(), missing.join(", "))
                                };
                                el.set_attribute("content", &merged)?;
                            }
                        } else if name == "tdm-reservation" {
                            st.tdm_seen = true;
                        }
                        Ok(())
                    },
                ),
            ))
            .append_element_content_handler((
                Cow::Borrowed(head_sel),
                ElementContentHandlers::default().element(
                    move |el: &mut lol_html::send::Element<'_, '_>| {
                        let st2 = s2.clone();
                        let inj = i2.clone();
                        // Before </head>, once every existing meta has been seen.
                        if let Some(handlers) = el.end_tag_handlers() {
                            let h: lol_html::send::EndTagHandler<'static> =
                                Box::new(move |end: &mut lol_html::html_content::EndTag<'_>| {
                                    let Ok(mut st) = st2.lock() else {
                                        return Ok(());
                                    };
                                    if !st.metas_done {
                                        inj.put_metas(script, &st, |t| {
                                            end.before(t, ContentType::Html)
                                        });
                                        st.metas_done = true;
                                    }
                                    Ok(())
                                });
                            handlers.push(h);
                        }
                        Ok(())
                    },
                ),
            ))
            .append_element_content_handler((
                Cow::Borrowed(body_sel),
                ElementContentHandlers::default().element(
                    move |el: &mut lol_html::send::Element<'_, '_>| {
                        let Ok(mut st) = s3.lock() else { return Ok(()) };
                        if !st.metas_done {
                            // No </head> seen: the metas go just before <body>,
                            // which parsers place in the (implied) head.
                            i3.put_metas(script, &st, |t| el.before(t, ContentType::Html));
                            st.metas_done = true;
                        }
                        if !st.link_done {
                            el.prepend(i3.trap_html(), ContentType::Html);
                            st.link_done = true;
                        }
                        Ok(())
                    },
                ),
            ))
            .append_document_content_handler(end!(move |end| {
                let Ok(mut st) = s4.lock() else { return Ok(()) };
                let mut tail = String::new();
                if !st.metas_done {
                    tail.push_str(&metas(&i4, script, &st));
                    st.metas_done = true;
                }
                if !st.link_done {
                    tail.push_str(i4.trap_html());
                    st.link_done = true;
                }
                if !tail.is_empty() {
                    end.append(&tail, ContentType::Html);
                }
                Ok(())
            }));
        let sink_out = out.clone();
        let sink: Sink = Box::new(move |c: &[u8]| {
            if let Ok(mut o) = sink_out.lock() {
                o.extend_from_slice(c);
            }
        });
        Some(HtmlInjector {
            rewriter: Some(HtmlRewriter::new(settings, sink)),
            out,
            state,
            body_seen: false,
            tail: [0; 4],
            tail_len: 0,
        })
    }

    fn take_out(&self) -> Vec<u8> {
        self.out
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }

    /// Whether everything is injected (the metas and the trap link).
    fn injected(&self) -> bool {
        self.state
            .lock()
            .map(|st| st.metas_done && st.link_done)
            .unwrap_or(false)
    }

    /// Feeds a chunk; returns what is ready to send. On a rewriter error
    /// the rest of the document passes through unchanged.
    ///
    /// Once the metas and the trap link are in (at the `<body>` start tag
    /// at the latest), nothing further is rewritten: the parser is ended
    /// there and the rest of the document passes through unparsed. So
    /// that where it stops does not depend on how the document was cut
    /// into chunks, the parser is fed up to each `>` in turn once `<body`
    /// has appeared in the text (in any case, even across a chunk
    /// boundary); before that it cannot stop (only a body start tag
    /// completes the injection), and the text up to there goes in one
    /// piece, not one write per tag. A page arriving in one chunk is
    /// parsed only up to its body.
    pub fn write(&mut self, chunk: &[u8]) -> Vec<u8> {
        // Room for the chunk and what is injected, once, instead of the
        // sink growing the buffer tag by tag.
        if self.rewriter.is_some()
            && let Ok(mut o) = self.out.lock()
        {
            o.reserve(chunk.len() + 1024);
        }
        let mut rest = chunk;
        while self.rewriter.is_some() {
            let cut = if self.body_seen {
                memchr::memchr(b'>', rest).map_or(rest.len(), |i| i + 1)
            } else {
                match find_body(self.tail_fed(), rest) {
                    Some(at) => {
                        self.body_seen = true;
                        at
                    }
                    None => rest.len(),
                }
            };
            let (part, after) = rest.split_at(cut);
            if !self.body_seen {
                self.keep_tail(part);
            }
            if !part.is_empty()
                && let Some(r) = self.rewriter.as_mut()
                && let Err(e) = r.write(part)
            {
                tracing::warn!("HTML rewrite stopped, passing the rest through: {e}");
                self.rewriter = None;
                let mut out = self.take_out();
                out.extend_from_slice(part);
                out.extend_from_slice(after);
                return out;
            }
            rest = after;
            if self.injected() {
                // Flushes what the parser still holds, unchanged.
                self.end_parser();
            }
            if rest.is_empty() {
                break;
            }
        }
        let mut out = self.take_out();
        out.extend_from_slice(rest);
        out
    }

    /// Keeps the last (up to 4) bytes fed, with those kept before.
    fn keep_tail(&mut self, part: &[u8]) {
        for &b in part.get(part.len().saturating_sub(4)..).unwrap_or(&[]) {
            self.tail.copy_within(1.., 0);
            self.tail[3] = b;
        }
        self.tail_len = (self.tail_len + part.len()).min(4);
    }

    /// The bytes [`HtmlInjector::keep_tail`] kept.
    fn tail_fed(&self) -> &[u8] {
        self.tail.get(4 - self.tail_len..).unwrap_or(&[])
    }

    /// Ends the parser (if it still runs): what it holds goes to `out`.
    fn end_parser(&mut self) {
        if let Some(r) = self.rewriter.take()
            && let Err(e) = r.end()
        {
            tracing::warn!("HTML rewrite could not finish: {e}");
        }
    }

    /// Ends the document; returns the last bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        self.end_parser();
        self.take_out()
    }
}

/// Where `<body` (ASCII case ignored) starts in `prev` + `rest`, as an
/// offset into `rest` (0 when it began in `prev`, the bytes fed just
/// before `rest`).
fn find_body(prev: &[u8], rest: &[u8]) -> Option<usize> {
    const NEEDLE: &[u8] = b"<body";
    // Begun in the previous bytes, finished in this chunk.
    for k in 1..NEEDLE.len() {
        let (head, tail) = NEEDLE.split_at(k);
        if prev.len() >= k
            && prev
                .get(prev.len() - k..)
                .is_some_and(|p| p.eq_ignore_ascii_case(head))
            && rest
                .get(..tail.len())
                .is_some_and(|r| r.eq_ignore_ascii_case(tail))
        {
            return Some(0);
        }
    }
    memchr::memchr_iter(b'<', rest).find(|&i| {
        rest.get(i..i + NEEDLE.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(NEEDLE))
    })
}

/// The `charset` parameter of a Content-Type value.
pub fn charset_of(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inj() -> Arc<Injection> {
        Arc::new(Injection {
            robots: vec!["noai".into(), "noimageai".into()],
            tdm: Some(true),
            tdm_policy: None,
            license: None,
            trap_path: Some("/trap/".into()),
            prebuilt: Default::default(),
        })
    }

    fn run(html: &[u8], charset: Option<&str>, chunk: usize) -> Vec<u8> {
        let mut r = HtmlInjector::new(inj(), None, charset).unwrap();
        let mut out = Vec::new();
        for c in html.chunks(chunk) {
            out.extend(r.write(c));
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn injects_into_head_even_when_tags_split_across_chunks() {
        let html =
            b"<!doctype html><html><head><title>x</title></head><body><p>hi</p></body></html>";
        for chunk in [1, 3, 7, 1000] {
            let out = String::from_utf8(run(html, None, chunk)).unwrap();
            assert!(
                out.contains("<title>x</title><meta name=\"robots\" content=\"noai, noimageai\"><meta name=\"tdm-reservation\" content=\"1\"></head>"),
                "{chunk}: {out}"
            );
            assert!(
                out.contains(
                    "<body><a href=\"/trap/\" rel=\"nofollow\" aria-hidden=\"true\" tabindex=\"-1\""
                ),
                "{out}"
            );
        }
    }

    #[test]
    fn merges_an_existing_robots_meta() {
        let html = b"<html><head><meta name=\"Robots\" content=\"noindex, NoAI\"></head><body></body></html>";
        let out = String::from_utf8(run(html, None, 5)).unwrap();
        assert!(
            out.contains("content=\"noindex, NoAI, noimageai\""),
            "{out}"
        );
        assert_eq!(
            out.matches("name=\"robots\"").count() + out.matches("name=\"Robots\"").count(),
            1,
            "{out}"
        );
    }

    /// The tags put from the prebuilt strings are what `metas` and
    /// `trap_link` write, for every state and with or without the script,
    /// and for injections with and without each part.
    #[test]
    fn prebuilt_tags_are_what_metas_writes() {
        let full = inj();
        let bare = Arc::new(Injection::default());
        let policy = Arc::new(Injection {
            tdm_policy: Some("https://a.test/p?x=\"1\"&y".into()),
            license: Some("/license.xml".into()),
            ..(*full).clone()
        });
        // Built before the clone below: the clone must not keep them.
        assert_eq!(full.trap_html(), trap_link(&full));
        let moved = Injection {
            trap_path: Some("/elsewhere/".into()),
            ..(*full).clone()
        };
        assert_eq!(moved.trap_html(), trap_link(&moved));
        assert!(moved.trap_html().contains("/elsewhere/"));
        for i in [full, bare, policy] {
            assert_eq!(i.trap_html(), trap_link(&i));
            for (robots_seen, tdm_seen) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let st = State {
                    robots_seen,
                    tdm_seen,
                    ..State::default()
                };
                for script in [None, Some("<script src=\"/c.js\"></script>")] {
                    let mut put = String::new();
                    i.put_metas(script, &st, |t| put.push_str(t));
                    assert_eq!(
                        put,
                        metas(&i, script, &st),
                        "{robots_seen} {tdm_seen} {script:?}"
                    );
                }
            }
        }
    }

    /// Other metas are left alone and do not count as ours; the two that
    /// do are recognised whatever the case of their name.
    #[test]
    fn only_the_robots_and_tdm_metas_are_read() {
        let html = b"<html><head><meta name=\"description\" content=\"noai\">\
<meta name=\"robots-extra\" content=\"x\"><meta NAME=\"TDM-Reservation\" content=\"0\">\
<meta name=\"viewport\" content=\"width=device-width\"></head><body></body></html>";
        let out = String::from_utf8(run(html, None, 7)).unwrap();
        // No robots meta of the page's own: ours is added, in full.
        assert!(
            out.contains("<meta name=\"robots\" content=\"noai, noimageai\">"),
            "{out}"
        );
        // The page's TDM reservation stands; none of ours is added.
        assert_eq!(out.matches("tdm-reservation").count(), 0, "{out}");
        assert_eq!(out.matches("TDM-Reservation").count(), 1, "{out}");
        // The others pass unchanged.
        for m in [
            "<meta name=\"description\" content=\"noai\">",
            "<meta name=\"robots-extra\" content=\"x\">",
            "<meta name=\"viewport\" content=\"width=device-width\">",
        ] {
            assert!(out.contains(m), "{m} in {out}");
        }
    }

    /// After `<body>` nothing is parsed: the rest leaves byte for byte
    /// (a robots meta in the body, invalid there, is not merged), in one
    /// chunk or in many; a `<body` in a comment is not taken for the body.
    /// `<body` found in any case, inside a chunk or begun in the bytes
    /// fed before it; `<bod` alone, `<bodyx`-less text and `body` without
    /// `<` are not it.
    #[test]
    fn body_is_found_within_and_across_chunks() {
        assert_eq!(find_body(b"", b"<head></head><BODY>"), Some(13));
        assert_eq!(find_body(b"", b"a < b <body"), Some(6));
        assert_eq!(find_body(b"", b"<bod"), None);
        assert_eq!(find_body(b"", b"body>"), None);
        assert_eq!(find_body(b"x<Bo", b"Dy>"), Some(0));
        assert_eq!(find_body(b"<bod", b"y class=a>"), Some(0));
        assert_eq!(find_body(b"<", b"body>"), Some(0));
        assert_eq!(find_body(b"<bo", b"x><body>"), Some(2));
        let mut inj = HtmlInjector::new(inj(), None, None).unwrap();
        let mut out = Vec::new();
        for b in b"<html><head></head><bo".iter().chain(b"dy><p>x</p>") {
            out.extend(inj.write(std::slice::from_ref(b)));
        }
        out.extend(inj.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("name=\"robots\""), "{text}");
        assert!(text.ends_with("<p>x</p>"), "{text}");
    }

    #[test]
    fn the_rest_after_body_passes_unparsed() {
        let page = b"<html><head><!-- <body> --><title>t</title></head><body class=x><p>a</p><meta name=robots content=index><p>b</p></body></html>";
        for chunk in [1, 7, page.len()] {
            let out = String::from_utf8(run(page, None, chunk)).unwrap();
            let body_at = out.find("<body class=x>").unwrap();
            assert!(
                out[..body_at].contains("<!-- <body> --><title>t</title><meta name=\"robots\""),
                "{chunk}: {out}"
            );
            assert!(
                out.ends_with("<p>a</p><meta name=robots content=index><p>b</p></body></html>"),
                "{chunk}: {out}"
            );
            assert!(
                out[body_at..].contains("rel=\"nofollow\""),
                "{chunk}: trap link: {out}"
            );
        }
    }

    #[test]
    fn documents_without_head_or_body() {
        let out = String::from_utf8(run(b"<p>just text</p>", None, 4)).unwrap();
        assert!(out.starts_with("<p>just text</p>"));
        assert!(out.contains("<meta name=\"robots\""), "{out}");
        let out = String::from_utf8(run(b"<html><body><p>x</p></body></html>", None, 4)).unwrap();
        assert!(out.contains("<meta name=\"robots\" content=\"noai, noimageai\"><meta name=\"tdm-reservation\" content=\"1\"><body>"), "{out}");
    }

    #[test]
    fn a_charset_named_only_in_a_meta_tag_keeps_its_bytes() {
        // Shift_JIS, declared in the page only: a robots tag whose content
        // is not ASCII is left byte for byte and ours is added; the text
        // and the merged tag of a windows-1252 page keep their bytes.
        let sjis = b"<html><head><meta charset=\"shift_jis\"><meta name=\"robots\" content=\"\x93\xfa\x96\x7b\"><title>\x93\xfa</title></head><body>\x96\x7b</body></html>";
        for chunk in [1, 7, 4096] {
            let out = run(sjis, None, chunk);
            let text = String::from_utf8_lossy(&out);
            let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
            assert!(has(b"content=\"\x93\xfa\x96\x7b\">"), "{text}");
            assert!(has(b"<title>\x93\xfa</title>"), "{text}");
            assert!(has(b"<body>"), "{text}");
            assert!(text.contains("content=\"noai, noimageai\""), "{text}");
        }
        let cp = b"<html><head><meta charset=\"windows-1252\"><meta name=\"robots\" content=\"index\"><title>caf\xe9</title></head><body>caf\xe9</body></html>";
        let out = run(cp, None, 5);
        let text = String::from_utf8_lossy(&out);
        assert!(out.windows(5).any(|w| w == b"caf\xe9<"), "{text}");
        assert!(
            text.contains("content=\"index, noai, noimageai\""),
            "{text}"
        );
        assert_eq!(text.matches("name=\"robots\"").count(), 1, "{text}");
    }

    #[test]
    fn non_utf8_pages_keep_their_bytes() {
        // "café" in windows-1252.
        let html = b"<html><head><title>caf\xe9</title></head><body>caf\xe9</body></html>";
        let out = run(html, Some("windows-1252"), 6);
        assert!(
            out.windows(5).any(|w| w == b"caf\xe9<"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(String::from_utf8_lossy(&out).contains("noimageai"));
        assert!(HtmlInjector::new(inj(), None, Some("utf-16")).is_none());
        assert_eq!(
            charset_of("text/html; Charset=\"ISO-8859-1\""),
            Some("ISO-8859-1")
        );
    }

    mod fuzz {
        //! Property tests: any bytes, split anywhere, never panic, and the
        //! output does not depend on where the chunks were cut.
        //! `PROPTEST_CASES=100000 cargo test -p fixative-proxy fuzz` runs longer.
        use super::super::*;
        use proptest::prelude::*;

        fn injection() -> Arc<Injection> {
            Arc::new(Injection {
                robots: vec!["noai".into(), "noimageai".into()],
                tdm: Some(true),
                tdm_policy: Some("https://example.test/policy".into()),
                license: None,
                trap_path: Some("/.well-known/fixative-trap".into()),
                prebuilt: Default::default(),
            })
        }

        fn run(doc: &[u8], cuts: &[usize], charset: Option<&str>) -> Vec<u8> {
            let Some(mut inj) = HtmlInjector::new(injection(), None, charset) else {
                return doc.to_vec();
            };
            let mut out = Vec::new();
            let mut at = 0;
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (doc.len() + 1)).collect();
            cuts.sort_unstable();
            for c in cuts {
                if c > at {
                    out.extend(inj.write(&doc[at..c]));
                    at = c;
                }
            }
            out.extend(inj.write(&doc[at..]));
            out.extend(inj.finish());
            out
        }

        fn html_like() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"<html>".to_vec()),
                Just(b"<head>".to_vec()),
                Just(b"</head>".to_vec()),
                Just(b"<body>".to_vec()),
                Just(b"<BoDy data-x=\"a>b\">".to_vec()),
                Just(b"<script>var s = '<body>';</script>".to_vec()),
                Just(b"<bo".to_vec()),
                Just(b"dy>".to_vec()),
                Just(b"<meta name=\"robots\" content=\"noindex\">".to_vec()),
                Just(b"<!-- c -->".to_vec()),
                Just(b"<script>if (a < b) {}</script>".to_vec()),
                Just(b"<p class='x'>text &amp; more".to_vec()),
                Just(b"<".to_vec()),
                Just(b"\xff\xfe\x00".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..16),
            ];
            proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            /// One pass escapes as the three replacements it replaced.
            #[test]
            fn attribute_escaping_matches_the_replacement_chain(v in "[&\"<>a-z é]{0,24}") {
                let mut out = String::from("x");
                push_attr(&mut out, &v);
                let want = v.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
                prop_assert_eq!(out, format!("x{want}"));
            }

            #[test]
            fn any_document_split_anywhere_rewrites_the_same(
                doc in html_like(),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
                legacy in any::<bool>(),
            ) {
                let charset = legacy.then_some("windows-1252");
                let whole = run(&doc, &[], charset);
                let split = run(&doc, &cuts, charset);
                prop_assert_eq!(whole, split);
            }
        }
    }
}
