//! Sets of IP networks with O(log n) lookup, and published IP-range files.
//!
//! Networks are turned into merged, sorted address intervals (IPv4 mapped
//! into the IPv6 space); a lookup is one binary search, never a scan.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6),
        },
    }
}

fn bounds(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// An immutable set of networks.
#[derive(Debug, Clone, Default)]
pub struct NetSet {
    /// Disjoint, sorted, merged intervals (inclusive).
    intervals: Vec<(u128, u128)>,
}

impl NetSet {
    /// Builds the set.
    pub fn new<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> NetSet {
        let mut v: Vec<(u128, u128)> = nets.into_iter().map(bounds).collect();
        v.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        NetSet { intervals: merged }
    }

    /// Whether the set holds no network.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// Whether `ip` is inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let x = to_u128(ip);
        let i = self.intervals.partition_point(|(s, _)| *s <= x);
        i > 0 && self.intervals.get(i - 1).is_some_and(|(_, e)| x <= *e)
    }
}

#[derive(Deserialize)]
struct RangesFile {
    prefixes: Vec<PrefixEntry>,
    #[serde(rename = "creationTime", default)]
    creation_time: Option<String>,
}

/// A list's `creationTime` as unix seconds: RFC 3339, or the publishers'
/// zone-less `2026-11-01T00:00:00.000000` (UTC).
pub fn creation_time(json: &str) -> Option<i64> {
    let f: RangesFile = serde_json::from_str(json).ok()?;
    let t = f.creation_time?;
    let t = t.trim();
    if let Ok(x) = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return Some(x.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let head = t.get(..19)?;
    time::PrimitiveDateTime::parse(head, &fmt)
        .ok()
        .map(|x| x.assume_utc().unix_timestamp())
}

#[derive(Deserialize)]
struct PrefixEntry {
    #[serde(rename = "ipv4Prefix")]
    ipv4: Option<String>,
    #[serde(rename = "ipv6Prefix")]
    ipv6: Option<String>,
}

/// Parses a published IP-range file (Google/Bing/OpenAI shape).
pub fn parse_ranges(json: &str) -> Result<Vec<IpNet>, String> {
    let f: RangesFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for p in f.prefixes {
        for s in [p.ipv4, p.ipv6].into_iter().flatten() {
            out.push(
                s.parse::<IpNet>()
                    .map_err(|_| format!("{s:?} is not a CIDR"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("no prefixes".into());
    }
    Ok(out)
}

/// The shipped snapshots, by file name.
const SHIPPED: &[(&str, &str)] = &[
    (
        "googlebot.json",
        include_str!("../data/ip-ranges/googlebot.json"),
    ),
    (
        "bingbot.json",
        include_str!("../data/ip-ranges/bingbot.json"),
    ),
];

/// Published IP ranges by file name.
#[derive(Debug, Default)]
pub struct IpRanges {
    files: HashMap<String, NetSet>,
    /// When each list was published (its `creationTime`, else the file's
    /// modification time), unix seconds.
    dates: HashMap<String, i64>,
}

impl IpRanges {
    /// The shipped snapshots, each replaced by a same-named file in `dir`.
    ///
    /// A file in `dir` that does not parse is an error (the caller keeps
    /// its last good ranges); extra files are loaded too.
    pub fn load(dir: Option<&Path>) -> Result<IpRanges, String> {
        let mut files = HashMap::new();
        let mut dates = HashMap::new();
        for (name, src) in SHIPPED {
            let nets = parse_ranges(src).map_err(|e| format!("shipped {name}: {e}"))?;
            files.insert(name.to_string(), NetSet::new(&nets));
            if let Some(t) = creation_time(src) {
                dates.insert(name.to_string(), t);
            }
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().to_string();
                let src = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let nets = parse_ranges(&src).map_err(|e| format!("{}: {e}", path.display()))?;
                let date = creation_time(&src).or_else(|| {
                    entry
                        .metadata()
                        .ok()?
                        .modified()
                        .ok()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs() as i64)
                });
                match date {
                    Some(t) => dates.insert(name.clone(), t),
                    None => dates.remove(&name),
                };
                files.insert(name, NetSet::new(&nets));
            }
        }
        Ok(IpRanges { files, dates })
    }

    /// Every loaded list and when it was published (unix seconds), by
    /// name.
    pub fn dates(&self) -> Vec<(String, Option<i64>)> {
        let mut v: Vec<(String, Option<i64>)> = self
            .files
            .keys()
            .map(|k| (k.clone(), self.dates.get(k).copied()))
            .collect();
        v.sort();
        v
    }

    /// The set of one file, if loaded.
    pub fn get(&self, file: &str) -> Option<&NetSet> {
        self.files.get(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_exact_at_the_edges() {
        let nets: Vec<IpNet> = [
            "10.0.0.0/24",
            "10.0.1.0/24",
            "192.0.2.128/25",
            "2001:db8::/32",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let s = NetSet::new(&nets);
        for (ip, want) in [
            ("10.0.0.0", true),
            ("10.0.1.255", true),
            ("10.0.2.0", false),
            ("9.255.255.255", false),
            ("192.0.2.127", false),
            ("192.0.2.128", true),
            ("192.0.2.255", true),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("::ffff:10.0.0.7", true),
        ] {
            assert_eq!(s.contains(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn shipped_snapshots_load_and_a_directory_overrides_them() {
        let r = IpRanges::load(None).unwrap();
        assert!(
            r.get("googlebot.json")
                .unwrap()
                .contains("66.249.66.1".parse().unwrap())
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("googlebot.json"),
            r#"{"creationTime":"x","prefixes":[{"ipv4Prefix":"203.0.113.0/24"}]}"#,
        )
        .unwrap();
        let r = IpRanges::load(Some(dir.path())).unwrap();
        let g = r.get("googlebot.json").unwrap();
        assert!(g.contains("203.0.113.9".parse().unwrap()));
        assert!(!g.contains("66.249.66.1".parse().unwrap()));
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        assert!(IpRanges::load(Some(dir.path())).is_err());
    }
}
