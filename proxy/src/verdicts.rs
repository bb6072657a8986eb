//! Acting on the `challenge` and `tarpit` verdicts, and answering
//! Fixative's own challenge endpoints (the check script, its answer, the
//! no-JS path, the maze): the requests that reach neither the origin nor
//! a plain error page.

use pingora::prelude::*;
use pingora::proxy::Session;

use fixative_rules::Action;

use crate::pages;
use crate::responses::{respond_html, serve_cloaked};
use crate::runtime::Runtime;
use crate::service::Ctx;
use crate::state::Shared;

/// Fixative's endpoints and the `challenge` and `tarpit` verdicts.
/// Returns whether the request was answered.
pub(crate) async fn serve_challenge(
    shared: &Shared,
    session: &mut Session,
    ctx: &mut Ctx,
    rt: &Runtime,
    own: Option<crate::challenge::Endpoint>,
    secure: bool,
) -> Result<bool> {
    use crate::challenge::Endpoint;
    let ua = session
        .req_header()
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let metrics = &shared.metrics;
    let verified = ctx
        .verdict
        .reasons
        .iter()
        .any(|r| r.signal == "crawler.verified");
    if own == Some(Endpoint::Maze) || matches!(ctx.verdict.action, Action::Tarpit(_)) {
        let status = match ctx.verdict.action {
            Action::Tarpit(s) => s,
            _ => 404,
        };
        let caps = &rt.config.tarpit;
        let slot = if !verified {
            shared
                .tarpit
                .enter(ctx.client_ip, caps.max_connections, caps.max_per_client)
        } else {
            None
        };
        let Some(slot) = slot else {
            if !verified {
                metrics.tarpit_refused.inc();
            }
            let html = if status == 404 {
                let (t, x) = pages::status_text(404);
                pages::page(404, t, x, &ctx.request_id)
            } else {
                pages::blocked(&ctx.request_id)
            };
            respond_html(session, status, html, ctx).await?;
            return Ok(true);
        };
        metrics.tarpit_active.inc();
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(session.req_header().uri.path().as_bytes());
            h.finish()
        };
        let r = crate::tarpit::serve(session, caps, seed, metrics).await;
        metrics.tarpit_active.dec();
        drop(slot);
        r?;
        return Ok(true);
    }
    let cc = crate::challenge::Ctx {
        keys: rt.engine.keys(),
        cfg: &rt.config.challenge,
        client_ip: ctx.client_ip,
        user_agent: &ua,
        secure,
        request_id: &ctx.request_id,
        metrics,
        spent: &shared.spent,
        fleet: &shared.fleet,
        debug_verdict: rt
            .config
            .server
            .debug_headers
            .then(|| ctx.verdict.header_value()),
    };
    if let Some(ep) = own {
        crate::challenge::serve(session, ep, &cc).await?;
        return Ok(true);
    }
    if let Action::Challenge(status) = ctx.verdict.action {
        let kind = crate::facts::kind(session, ctx);
        let req = session.req_header();
        let readable = req.method == http::Method::GET || req.method == http::Method::HEAD;
        if readable && kind == fixative_rules::state::RequestKind::Page {
            let back = req
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            crate::challenge::serve_interstitial(session, status, &back, &cc).await?;
            return Ok(true);
        }
        if readable
            && kind == fixative_rules::state::RequestKind::Image
            && let Some(i) = ctx.site
        {
            // People who have not passed yet still see the artwork.
            serve_cloaked(session, ctx, rt, i, metrics).await?;
            return Ok(true);
        }
        let html = pages::blocked(&ctx.request_id);
        respond_html(session, status, html, ctx).await?;
        return Ok(true);
    }
    Ok(false)
}
