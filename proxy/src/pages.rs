//! Small, humane HTML pages for Fixative's own responses.

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete error page: status, a title and an explanation for people.
pub fn page(status: u16, title: &str, explanation: &str, request_id: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex, noai, noimageai\">\
<title>{status} {title}</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
code{{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px}}</style></head>\
<body><h1>{title}</h1><p>{explanation}</p>\
<p>If you need help, quote this request id: <code>{rid}</code></p>\
<hr><p><small>Fixative</small></p></body></html>\n",
        title = escape(title),
        explanation = escape(explanation),
        rid = escape(request_id),
    )
}

/// 502: the origin could not be reached or answered badly.
pub fn bad_gateway(request_id: &str) -> String {
    page(
        502,
        "Bad gateway",
        "The site's server could not be reached or sent a broken answer. Please try again in a moment.",
        request_id,
    )
}

/// 504: the origin took too long.
pub fn gateway_timeout(request_id: &str) -> String {
    page(
        504,
        "Gateway timeout",
        "The site's server took too long to answer. Please try again in a moment.",
        request_id,
    )
}

/// 421: no site for this host.
pub fn misdirected(request_id: &str) -> String {
    page(
        421,
        "Unknown site",
        "This server does not host the site you asked for. Check the address.",
        request_id,
    )
}

/// 400: malformed request.
pub fn bad_request(request_id: &str, why: &str) -> String {
    page(400, "Bad request", why, request_id)
}

/// 403: blocked by policy.
pub fn blocked(request_id: &str) -> String {
    page(
        403,
        "Access refused",
        "This site does not allow automated collection of its content, including for AI training. \
Your request looked automated, so it was refused. If you are a person using a normal browser, \
please contact the site's owner and quote the request id below.",
        request_id,
    )
}

/// Title and plain-words explanation of a status Fixative answers itself.
pub fn status_text(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("Bad request", "The request could not be understood."),
        405 => ("Method not allowed", "This method is not served here."),
        408 => (
            "Request timeout",
            "The request took too long to arrive. Please try again.",
        ),
        413 => (
            "Content too large",
            "The request's body is larger than this site accepts.",
        ),
        431 => (
            "Request header fields too large",
            "The request's headers are larger than this site accepts.",
        ),
        502 => (
            "Bad gateway",
            "The site's server sent an answer that could not be used. Please try again shortly.",
        ),
        503 => (
            "Temporarily unavailable",
            "Too many connections are open right now. Please try again shortly.",
        ),
        504 => (
            "Gateway timeout",
            "The site's server did not answer in time. Please try again shortly.",
        ),
        _ => (
            "Something went wrong",
            "The request could not be completed.",
        ),
    }
}

/// The interstitial of the `challenge` action: explains itself in plain
/// words, runs the check script visibly (`script_tag` returns to the page
/// when done) and, without JavaScript, leads through the no-JS path by a
/// meta refresh after `delay` seconds or a button. No third-party
/// resources; the status line is a live region for screen readers.
pub fn interstitial(
    script_tag: &str,
    nojs_url: &str,
    token: &str,
    back: &str,
    delay: u64,
    request_id: &str,
) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex, noai, noimageai\">\
<title>Checking your browser</title>\
<noscript><meta http-equiv=\"refresh\" content=\"{delay}; url={nojs}\"></noscript>\
{script}\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
button{{font:inherit;padding:.4rem 1rem}}code{{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px}}</style></head>\
<body><main><h1>Checking your browser</h1>\
<p>This site shares artists' work and keeps automated copying for AI training away from it. \
Your browser is doing a short check; it takes about a second and then this page loads by itself.</p>\
<p id=\"fixative-status\" role=\"status\" aria-live=\"polite\">Checking…</p>\
<noscript><p>JavaScript is off, which is fine: the page continues by itself in {delay} seconds, \
or use the button below once that time has passed.</p>\
<form method=\"get\" action=\"/.fixative/nojs\">\
<input type=\"hidden\" name=\"t\" value=\"{token}\"><input type=\"hidden\" name=\"r\" value=\"{back}\">\
<button type=\"submit\">Continue to the page</button></form></noscript>\
<p><small>Nothing is installed and nothing about you is shared with anyone. \
If you need help, quote this request id: <code>{rid}</code></small></p></main></body></html>\n",
        nojs = escape(nojs_url),
        script = script_tag,
        token = escape(token),
        back = escape(back),
        rid = escape(request_id),
    )
}
