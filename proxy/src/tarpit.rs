//! The `tarpit` action: a slow, cheap answer that wastes a scraper's time.
//!
//! A tarpitted request gets a page of plausible but worthless text,
//! generated on the fly from a seed and drip-fed a few bytes every
//! `interval`, with links deeper into the maze (`/.fixative/maze/…`, which
//! robots.txt disallows and no page links to). Hard caps: tarpitted
//! responses at once (in all and per client), bytes and duration per
//! response. Nothing is buffered: a response holds a seed, a counter and
//! one small chunk, so its memory is Pingora's per-connection state only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Tarpitted responses in flight.
#[derive(Default)]
pub struct Tarpit {
    active: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// A place in the tarpit; released on drop.
pub struct Slot<'a> {
    pit: &'a Tarpit,
    client: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.pit.active.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut m) = self.pit.per_client.lock()
            && let Some(n) = m.get_mut(&self.client)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

impl Tarpit {
    /// A slot, when both caps have room. The per-client map holds one
    /// entry per client with a slot, so it is bounded by `max_total`.
    pub fn enter(
        &self,
        client: IpAddr,
        max_total: usize,
        max_per_client: usize,
    ) -> Option<Slot<'_>> {
        let Ok(mut m) = self.per_client.lock() else {
            return None;
        };
        if self.active.load(Ordering::Relaxed) >= max_total {
            return None;
        }
        let n = m.entry(client).or_insert(0);
        if *n >= max_per_client {
            if *n == 0 {
                m.remove(&client);
            }
            return None;
        }
        *n += 1;
        self.active.fetch_add(1, Ordering::Relaxed);
        Some(Slot { pit: self, client })
    }

    /// Responses in the tarpit now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// A small, fast generator (SplitMix64): the text needs no quality.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    fn word(&mut self) -> &'static str {
        const W: &[&str] = &[
            "archive",
            "study",
            "sketch",
            "canvas",
            "series",
            "light",
            "morning",
            "harbour",
            "figure",
            "colour",
            "paper",
            "ink",
            "quiet",
            "river",
            "portrait",
            "garden",
            "winter",
            "texture",
            "line",
            "shadow",
            "early",
            "notes",
            "frame",
            "detail",
            "collection",
            "edition",
            "print",
            "landscape",
            "window",
            "still",
            "life",
            "process",
            "layer",
            "wash",
            "graphite",
            "field",
            "evening",
            "room",
            "small",
            "large",
            "untitled",
        ];
        let i = (self.next() % W.len() as u64) as usize;
        W.get(i).copied().unwrap_or("archive")
    }

    /// Appends a paragraph with a link into the maze.
    fn paragraph(&mut self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("<p>");
        let n = 12 + (self.next() % 30) as usize;
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            if i == n / 2 {
                let _ = write!(
                    out,
                    "<a href=\"{}maze/{:016x}\">{} {}</a>",
                    crate::challenge::PREFIX,
                    self.next(),
                    self.word(),
                    self.word()
                );
            } else {
                out.push_str(self.word());
            }
        }
        out.push_str(".</p>\n");
    }
}

/// Drip-feeds the maze page until a cap is reached or the client leaves.
/// Returns the bytes sent.
pub async fn serve(
    session: &mut Session,
    caps: &fixative_config::Tarpit,
    seed: u64,
    metrics: &crate::metrics::Metrics,
) -> Result<usize> {
    let started = Instant::now();
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header("content-type", "text/html; charset=utf-8")?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-robots-tag", "noindex, nofollow, noai, noimageai")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    let mut words = Words(seed);
    // Bytes per drip: the byte cap spread over the duration cap.
    let drips = (caps.max_duration.as_millis() / caps.interval.as_millis().max(1)).max(1) as usize;
    let per_drip = (caps.max_bytes / drips).clamp(16, 2048);
    let mut sent = 0usize;
    let mut chunk = String::with_capacity(per_drip + 512);
    chunk.push_str(
        "<!doctype html><html><head><meta name=\"robots\" content=\"noindex, nofollow, noai, noimageai\"><title>Archive</title></head><body>\n",
    );
    let mut pending = String::new();
    let result: Result<()> = async {
        loop {
            while chunk.len() < per_drip {
                if pending.is_empty() {
                    words.paragraph(&mut pending);
                }
                let take = (per_drip - chunk.len()).min(pending.len());
                // Split on a character boundary (the text is ASCII).
                let take = (0..=take)
                    .rev()
                    .find(|i| pending.is_char_boundary(*i))
                    .unwrap_or(0);
                chunk.push_str(pending.get(..take).unwrap_or(""));
                pending.drain(..take);
                if take == 0 {
                    break;
                }
            }
            let last = sent + chunk.len() >= caps.max_bytes
                || started.elapsed() + caps.interval >= caps.max_duration;
            if last {
                chunk.push_str("</body></html>\n");
            }
            let n = chunk.len();
            let body = Bytes::from(std::mem::take(&mut chunk));
            session.write_response_body(Some(body), last).await?;
            sent += n;
            metrics.tarpit_bytes.inc_by(n as u64);
            if last {
                return Ok(());
            }
            chunk.reserve(per_drip + 512);
            tokio::time::sleep(caps.interval).await;
        }
    }
    .await;
    metrics
        .tarpit_seconds
        .inc_by(started.elapsed().as_secs_f64());
    result.map(|()| sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold() {
        let t = Tarpit::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let s1 = t.enter(a, 3, 2);
        let s2 = t.enter(a, 3, 2);
        assert!(s1.is_some() && s2.is_some());
        assert!(t.enter(a, 3, 2).is_none(), "per-client cap");
        let s3 = t.enter(b, 3, 2);
        assert!(s3.is_some());
        assert!(t.enter(b, 3, 2).is_none(), "global cap");
        assert_eq!(t.active(), 3);
        drop((s1, s2, s3));
        assert_eq!(t.active(), 0);
        assert!(t.per_client.lock().map(|m| m.is_empty()).unwrap_or(false));
    }

    #[test]
    fn the_maze_is_deterministic_text_with_links() {
        let mut a = Words(7);
        let mut b = Words(7);
        let (mut x, mut y) = (String::new(), String::new());
        a.paragraph(&mut x);
        b.paragraph(&mut y);
        assert_eq!(x, y);
        assert!(x.contains("<a href=\"/.fixative/maze/"));
    }
}
