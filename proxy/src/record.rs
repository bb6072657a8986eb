//! What a finished request leaves behind besides its access-log line and
//! metrics: the dashboard's per-second counts and crawlers, robots.txt
//! violations (a crawler fetching what robots.txt it read disallows) and
//! the evidence ledger's visit.

use pingora::proxy::Session;

use crate::access_log;
use crate::service::Ctx;
use crate::state::Shared;

/// Feeds the dashboard (per-second counts, crawlers, robots.txt
/// violators) and the evidence ledger with a finished request.
pub(crate) fn record_activity(
    shared: &Shared,
    session: &Session,
    ctx: &Ctx,
    entry: &access_log::Entry<'_>,
    unix: u64,
) {
    let v = &ctx.verdict;
    let activity = &shared.activity;
    activity.record(
        unix,
        v.action.as_str(),
        v.category.map(|c| c.as_str()),
        v.crawler.as_ref(),
    );
    let (Some(rt), Some(i)) = (&ctx.runtime, ctx.site) else {
        return;
    };
    let Some(site) = rt.sites.get(i) else { return };
    let ledger = shared
        .evidence
        .as_ref()
        .zip(rt.config.evidence.as_ref())
        .filter(|(_, cfg)| crate::evidence::wanted(cfg, site, v))
        .map(|(l, _)| l);
    let fetched = activity.robots_fetched(&site.name, ctx.client_ip);
    if ledger.is_none() && fetched.is_none() {
        return;
    }
    let req = session.req_header();
    let ua = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let path = req.uri.path();
    let agents = crate::evidence::agents(rt, v.crawler.as_deref(), ua);
    if let Some(at) = fetched {
        activity.violation_after(
            at,
            &site.name,
            ctx.client_ip,
            ua,
            v.crawler.as_deref(),
            &agents,
            path,
            unix,
        );
    }
    if let Some(ledger) = ledger {
        let xmp = ctx
            .image
            .as_ref()
            .and_then(|s| s.outcome())
            .filter(|o| *o == fixative_protector::xmp::Outcome::Inserted)
            .map(|_| site.variant(ctx.pref).0.data_mining.as_str())
            .or(ctx
                .variant
                .map(|_| site.variant(ctx.pref).0.data_mining.as_str()));
        let visit = crate::evidence::visit(
            rt,
            site,
            activity,
            &crate::evidence::Finished {
                entry,
                user_agent: ua,
                response: session.response_written(),
                xmp,
                variant: ctx.variant,
                robots_fetched: fetched,
            },
            &agents,
        );
        ledger.record(visit);
    }
}
