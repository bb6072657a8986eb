//! Response bodies Fixative changes while they stream: HTML pages get the
//! no-train meta tags, the trap link and the check script; JPEG, PNG and
//! WebP images get XMP metadata. Decided in `response_filter` (from the
//! response header), applied chunk by chunk in `response_body_filter`.

use bytes::Bytes;
use fixative_rules::Action;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::service::Ctx;

/// The directives of the routed site (none for unrouted requests).
pub(crate) fn site_directives(ctx: &Ctx) -> Option<&fixative_config::Directives> {
    site_variant(ctx).map(|(d, _)| d)
}

/// The routed site's directives and their prepared values (header values,
/// page injection) for the request's preference.
fn site_variant(ctx: &Ctx) -> Option<(&fixative_config::Directives, &crate::directives::Prepared)> {
    let rt = ctx.runtime.as_ref()?;
    ctx.site
        .and_then(|i| rt.sites.get(i))
        .map(|s| s.variant(ctx.pref))
}

/// Whether a header value starts with `prefix`, ASCII case ignored
/// (compared without a lowercased copy).
fn starts_ignoring_case(value: &[u8], prefix: &str) -> bool {
    value
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The body is about to change: its length, validators and ranges no
/// longer hold; it goes out chunked.
fn mark_body_rewritten(resp: &mut ResponseHeader) -> Result<()> {
    resp.remove_header(&http::header::CONTENT_LENGTH);
    resp.remove_header(&http::header::ETAG);
    resp.remove_header(&http::header::ACCEPT_RANGES);
    resp.remove_header("content-md5");
    resp.insert_header(
        http::header::TRANSFER_ENCODING,
        http::HeaderValue::from_static("chunked"),
    )?;
    Ok(())
}

/// Starts the streaming meta/trap-link rewrite for an HTML 200 response.
pub(crate) fn start_html_rewrite(
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    if !ctx.page_request || resp.status != 200 || session.req_header().method != http::Method::GET {
        return Ok(());
    }
    let Some(d) = site_directives(ctx) else {
        return Ok(());
    };
    // The check script, for browser-like clients without a pass on
    // sites whose policy reads passes.
    let script = ctx.runtime.as_ref().and_then(|rt| {
        let policy = ctx
            .site
            .and_then(|i| rt.sites.get(i))
            .map(|s| s.policy.as_str())
            .unwrap_or("default");
        let browser_like = ctx.verdict.crawler.is_none()
            && matches!(
                ctx.verdict.category,
                None | Some(fixative_rules::Category::HeadlessBrowser)
            );
        let needs = !matches!(
            ctx.verdict.pass,
            fixative_rules::pass::PassState::Valid | fixative_rules::pass::PassState::Automation
        );
        (rt.config.challenge.inject
            && browser_like
            && needs
            && rt.engine.keys().can_sign()
            && rt.engine.policy_reads_passes(policy))
        .then(|| crate::challenge::PAGE_SCRIPT_TAG.as_str())
    });
    if !d.html_meta && !d.trap_link && script.is_none() {
        return Ok(());
    }
    let ctype = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_html = ["text/html", "application/xhtml+xml"]
        .iter()
        .any(|t| starts_ignoring_case(ctype.trim_start().as_bytes(), t));
    let encoded = resp
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let empty = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    if !is_html || encoded || empty {
        return Ok(());
    }
    let Some((_, prepared)) = site_variant(ctx) else {
        return Ok(());
    };
    let Some(inj) = crate::html::HtmlInjector::new(
        prepared.html.clone(),
        script,
        crate::html::charset_of(ctype),
    ) else {
        return Ok(());
    };
    ctx.html = Some(Box::new(std::sync::Mutex::new(inj)));
    // The body changes: its length, validators and ranges no longer hold.
    mark_body_rewritten(resp)?;
    Ok(())
}

/// Starts collecting a JPEG/PNG/WebP 200 response to add XMP metadata.
pub(crate) fn start_image_metadata(
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut Ctx,
) -> Result<()> {
    if resp.status != 200 || session.req_header().method != http::Method::GET {
        return Ok(());
    }
    let Some(d) = site_directives(ctx) else {
        return Ok(());
    };
    let wanted = match d.image_metadata {
        fixative_config::ImageMetadata::All => true,
        fixative_config::ImageMetadata::NonAllowed => {
            !matches!(ctx.verdict.action, Action::Allow | Action::Limit)
        }
        _ => false,
    };
    if !wanted {
        return Ok(());
    }
    let ctype = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes().trim_ascii_start())
        .unwrap_or(b"");
    let starts = |t: &str| starts_ignoring_case(ctype, t);
    let is_image = ["image/jpeg", "image/pjpeg", "image/png", "image/webp"]
        .iter()
        .any(|t| starts(t));
    let encoded = resp.headers.get(http::header::CONTENT_ENCODING).is_some();
    let length = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // JPEG and PNG stream (only their head is held); a WebP is held
    // whole, so one known to be over the cap passes untouched. Empty
    // bodies pass too.
    let webp = starts("image/webp");
    let fits = length.is_none_or(|l| l > 0 && (!webp || l <= d.image_metadata_max_bytes));
    if !is_image || encoded || !fits {
        return Ok(());
    }
    ctx.image = Some(fixative_protector::xmp::XmpStream::new(
        &d.data_mining,
        d.image_metadata_max_bytes,
    ));
    mark_body_rewritten(resp)?;
    Ok(())
}

/// Applies the active body change to one chunk of the response.
pub(crate) fn filter(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) {
    if let Some(img) = ctx.image.as_mut() {
        use fixative_protector::xmp::Out;
        let chunk = body.as_deref().unwrap_or(&[]);
        match img.push(chunk, end_of_stream) {
            Out::Pass => {}
            Out::Hold => *body = None,
            Out::Bytes(b) => *body = (!b.is_empty()).then(|| Bytes::from(b)),
        }
        if end_of_stream {
            if img.outcome() != Some(fixative_protector::xmp::Outcome::Inserted) {
                tracing::debug!("image passed through without XMP");
            }
            ctx.image = None;
        }
        return;
    }
    if let Some(m) = ctx.html.as_mut() {
        let inj = m.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut out = match body.take() {
            Some(chunk) => inj.write(&chunk),
            None => Vec::new(),
        };
        if end_of_stream {
            out.extend(inj.finish());
            ctx.html = None;
        }
        *body = if out.is_empty() {
            None
        } else {
            Some(Bytes::from(out))
        };
    }
}
