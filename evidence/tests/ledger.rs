//! The ledger on disk: written, verified, tampered with, rotated, exported.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fixative_evidence::{
    Export, ExportFilter, Ledger, LedgerConfig, Reservation, Robots, Visit, export, verify,
};

fn key() -> fixative_evidence::PrivateKey {
    let (pem, _, _) = fixative_evidence::generate_key().unwrap();
    fixative_evidence::private_key_from_pem(&pem).unwrap()
}

fn config(dir: &Path, key: &fixative_evidence::PrivateKey) -> LedgerConfig {
    LedgerConfig {
        dir: dir.to_path_buf(),
        key: key.clone(),
        seal_every: 5,
        seal_interval: Duration::from_secs(60),
        max_file_bytes: 64 * 1024 * 1024,
        max_total_bytes: 1024 * 1024 * 1024,
        queue: 10_000,
        node: "test".into(),
    }
}

fn visit(i: usize, crawler: &str, site: &str) -> Visit {
    Visit {
        request_id: format!("{i:016x}"),
        site: site.into(),
        host: format!("{site}.test"),
        method: "GET".into(),
        path: format!("/art/{i}.jpg"),
        status: 200,
        bytes: 1000 + i as u64,
        user_agent: format!("Mozilla/5.0 (compatible; {crawler}/1.0)"),
        client_ip: "203.0.113.7".into(),
        network: "203.0.113.0/24".into(),
        crawler: Some(crawler.into()),
        category: Some("ai-training".into()),
        action: "cloak".into(),
        score: 100,
        reasons: vec!["catalog.ai-training".into()],
        reservation: Reservation {
            robots_txt: Some(Robots {
                disallowed: true,
                agent: "GPTBot".into(),
                group: vec!["User-agent: GPTBot".into(), "Disallow: /".into()],
                fetched_at: Some("2026-11-30T10:00:00.000Z".into()),
            }),
            headers: vec![
                ("x-robots-tag".into(), "noai, noimageai".into()),
                ("tdm-reservation".into(), "1".into()),
            ],
            xmp: Some("DMI-PROHIBITED".into()),
        },
        variant: Some("preview".into()),
        watermark: Some("0123456789abcdef".into()),
        ..Visit::default()
    }
}

fn write(dir: &Path, key: &fixative_evidence::PrivateKey, visits: &[Visit]) {
    let l = Ledger::open(config(dir, key)).unwrap();
    for v in visits {
        assert!(l.record(v.clone()));
    }
    l.close();
}

fn lines(dir: &Path) -> (PathBuf, Vec<String>) {
    let f = fixative_evidence::ledger_files(dir).unwrap().pop().unwrap();
    let text = std::fs::read_to_string(&f).unwrap();
    (f, text.lines().map(str::to_string).collect())
}

fn put(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn sample(n: usize) -> Vec<Visit> {
    (0..n).map(|i| visit(i, "GPTBot", "gallery")).collect()
}

#[test]
fn a_written_ledger_verifies_and_every_line_is_sealed() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(12));
    let r = verify(d.path(), Some(&k.verifying_key())).unwrap();
    assert!(r.ok(), "{r}");
    assert_eq!(r.visits, 12);
    assert_eq!(r.starts, 1);
    // A seal after every 5 lines (start + 4 visits, then 5 visits, …),
    // and one when the writer stops.
    assert_eq!(r.seals, 3, "{r}");
    assert_eq!(r.unsealed, 0);
    assert_eq!(r.first_n, 0);
    assert_eq!(r.last_n, Some(12 + 1 + 3 - 1));
    assert_eq!(r.keys.len(), 1);
    // Another key pinned: the first seal already fails.
    let other = key();
    let r = verify(d.path(), Some(&other.verifying_key())).unwrap();
    assert_eq!(r.broken.as_ref().unwrap().n, 5, "{r}");
    assert!(r.broken.unwrap().why.contains("not by the ledger's key"));
}

#[test]
fn a_flipped_byte_is_named_by_record() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(12));
    let (f, mut l) = lines(d.path());
    // Record 7 is a visit: change one byte of its path.
    assert!(l[7].contains("\"n\":7,"));
    l[7] = l[7].replacen("/art/", "/arT/", 1);
    put(&f, &l);
    let r = verify(d.path(), None).unwrap();
    let b = r.broken.clone().unwrap();
    assert_eq!(b.n, 7, "{r}");
    assert_eq!(b.line, 8);
    assert!(b.why.contains("record 7 was altered"), "{}", b.why);
    assert!(r.to_string().contains("BROKEN at record 7"));
}

#[test]
fn a_flipped_byte_that_breaks_the_json_is_named_too() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(12));
    let (f, _) = lines(d.path());
    let mut bytes = std::fs::read(&f).unwrap();
    // The first byte of line 4 (record 3): '{' becomes '['.
    let pos = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(2)
        .unwrap()
        .0
        + 1;
    bytes[pos] ^= 0x20;
    std::fs::write(&f, bytes).unwrap();
    let b = verify(d.path(), None).unwrap().broken.unwrap();
    assert_eq!((b.n, b.line), (3, 4), "{b:?}");
}

#[test]
fn a_deleted_record_is_named() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(12));
    let (f, mut l) = lines(d.path());
    l.remove(9);
    put(&f, &l);
    let b = verify(d.path(), None).unwrap().broken.unwrap();
    assert_eq!(b.n, 9, "{b:?}");
    assert!(b.why.contains("record 9 is missing"), "{}", b.why);
    // The last record removed: the final seal went with it only if it was
    // the seal; a removed last visit leaves the seal unable to verify.
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &k, &sample(12));
    let (f, mut l) = lines(d.path());
    let last = l.pop().unwrap();
    l.pop();
    l.push(last.replace(
        &format!("\"n\":{}", l.len() + 1),
        &format!("\"n\":{}", l.len()),
    ));
    put(&f, &l);
    assert!(!verify(d.path(), None).unwrap().ok());
}

#[test]
fn reordered_lines_and_files_are_detected() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(12));
    let (f, mut l) = lines(d.path());
    l.swap(3, 4);
    put(&f, &l);
    let b = verify(d.path(), None).unwrap().broken.unwrap();
    assert_eq!(b.n, 3, "{b:?}");
    assert!(b.why.contains("record 3 is missing"), "{}", b.why);

    // Two files (small files rotate), then their names swapped.
    let d = tempfile::tempdir().unwrap();
    let mut c = config(d.path(), &k);
    c.max_file_bytes = 4 * 1024;
    let l = Ledger::open(c).unwrap();
    for v in sample(20) {
        l.record(v);
    }
    l.close();
    let files = fixative_evidence::ledger_files(d.path()).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    assert!(verify(d.path(), Some(&k.verifying_key())).unwrap().ok());
    let tmp = d.path().join("x");
    std::fs::rename(&files[1], &tmp).unwrap();
    std::fs::rename(&files[2], &files[1]).unwrap();
    std::fs::rename(&tmp, &files[2]).unwrap();
    let r = verify(d.path(), None).unwrap();
    let b = r.broken.clone().unwrap();
    assert!(b.why.contains("missing"), "{r}");
    assert_eq!(b.file, files[1].file_name().unwrap().to_str().unwrap());
}

#[test]
fn a_consistently_rewritten_chain_fails_at_the_seal() {
    // A forger without the key alters a visit and recomputes every later
    // hash: the chain holds, the next seal does not.
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(12));
    let (f, mut l) = lines(d.path());
    l[2] = l[2].replace("203.0.113.7", "198.51.100.9");
    for i in 3..l.len() {
        let prev = fixative_evidence::line_hash(l[i - 1].as_bytes());
        let mut v: serde_json::Value = serde_json::from_str(&l[i]).unwrap();
        v["prev"] = prev.into();
        // serde_json keeps the field order of the original (preserve_order
        // is not needed: rewrite the prev field in place).
        let old = serde_json::from_str::<serde_json::Value>(&l[i]).unwrap()["prev"]
            .as_str()
            .unwrap()
            .to_string();
        l[i] = l[i].replace(&old, v["prev"].as_str().unwrap());
    }
    put(&f, &l);
    let r = verify(d.path(), None).unwrap();
    let b = r.broken.unwrap();
    assert_eq!(b.n, 5, "{b:?}");
    assert!(b.why.contains("seal does not verify"), "{}", b.why);
}

#[test]
fn a_reopened_ledger_continues_its_chain_and_notes_a_cut_line() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    write(d.path(), &k, &sample(3));
    // A crash in the middle of a write.
    let (f, _) = lines(d.path());
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(b"{\"n\":99,\"prev\":\"ab");
    std::fs::write(&f, &bytes).unwrap();
    let r = verify(d.path(), None).unwrap();
    assert!(r.ok() && r.unfinished_tail, "{r}");
    write(d.path(), &k, &sample(3));
    let r = verify(d.path(), Some(&k.verifying_key())).unwrap();
    assert!(r.ok(), "{r}");
    assert_eq!((r.visits, r.starts, r.unsealed), (6, 2, 0));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("\"truncated_bytes\":18"), "{text}");
}

#[test]
fn retention_keeps_the_budget_and_the_chain_verifiable() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    let mut c = config(d.path(), &k);
    c.max_file_bytes = 4 * 1024;
    c.max_total_bytes = 16 * 1024;
    let l = Ledger::open(c).unwrap();
    for v in sample(200) {
        l.record(v);
    }
    let stats = l.stats().clone();
    l.close();
    let total: u64 = fixative_evidence::ledger_files(d.path())
        .unwrap()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 16 * 1024 + 4 * 1024, "{total}");
    assert!(
        stats
            .removed_files
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let r = verify(d.path(), Some(&k.verifying_key())).unwrap();
    assert!(r.ok(), "{r}");
    assert!(r.first_n > 0);
    assert!(r.to_string().contains("removed by retention"));
    // The oldest remaining file deleted by hand: no retention line covers it.
    let files = fixative_evidence::ledger_files(d.path()).unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    let b = verify(d.path(), None).unwrap().broken.unwrap();
    assert!(b.why.contains("are missing"), "{b:?}");
}

#[test]
fn a_full_queue_drops_counts_and_the_chain_notes_the_gap() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    let mut c = config(d.path(), &k);
    c.queue = 1;
    let l = Ledger::open(c).unwrap();
    let v = visit(0, "GPTBot", "gallery");
    let mut refused = 0u64;
    for _ in 0..20_000 {
        if !l.record(v.clone()) {
            refused += 1;
        }
    }
    let stats = l.stats().clone();
    l.close();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        refused > 0,
        "a queue of 1 took 20,000 visits without dropping"
    );
    assert_eq!(dropped, refused);
    let r = verify(d.path(), None).unwrap();
    assert!(r.ok(), "{r}");
    // Every visit is either in the ledger or counted by a gap line (the
    // last drops are noted only if a visit followed them).
    assert!(r.dropped > 0 && r.dropped <= dropped, "{r}");
    assert!(r.visits + dropped == 20_000, "{r}");
}

#[test]
fn exports_filter_by_crawler_site_and_time() {
    let d = tempfile::tempdir().unwrap();
    let k = key();
    let mut visits = sample(4);
    visits.extend((4..7).map(|i| visit(i, "ClaudeBot", "gallery")));
    visits.extend((7..9).map(|i| visit(i, "GPTBot", "portfolio")));
    write(d.path(), &k, &visits);
    let run = |f: ExportFilter, fmt| {
        let mut out = Vec::new();
        let (r, n) = export(d.path(), &f, fmt, None, false, &mut out).unwrap();
        assert!(r.ok());
        (n, String::from_utf8(out).unwrap())
    };
    let (n, csv) = run(
        ExportFilter {
            crawler: Some("gptbot".into()),
            ..Default::default()
        },
        Export::Csv,
    );
    assert_eq!(n, 6);
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6);
    let h = rd.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|x| x == name).unwrap();
    assert!(rows.iter().all(|r| &r[col("crawler")] == "GPTBot"));
    assert_eq!(&rows[0][col("x_robots_tag")], "noai, noimageai");
    assert_eq!(&rows[0][col("robots_txt_disallowed")], "true");
    assert_eq!(&rows[0][col("watermark")], "0123456789abcdef");
    // A user agent with a comma and quotes survives the CSV.
    assert!(rows[0][col("user_agent")].contains("compatible; GPTBot"));

    let (n, json) = run(
        ExportFilter {
            crawler: Some("GPTBot".into()),
            site: Some("portfolio".into()),
            ..Default::default()
        },
        Export::Json,
    );
    assert_eq!(n, 2);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["visits"].as_array().unwrap().len(), 2);
    assert_eq!(v["visits"][0]["path"], "/art/7.jpg");
    assert_eq!(
        v["visits"][0]["reservation"]["robots_txt"]["disallowed"],
        true
    );

    let future = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let (n, _) = run(
        ExportFilter {
            since: Some(future),
            ..Default::default()
        },
        Export::Json,
    );
    assert_eq!(n, 0);
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let (n, _) = run(
        ExportFilter {
            since: Some(past),
            ..Default::default()
        },
        Export::Csv,
    );
    assert_eq!(n, 9);

    // A broken ledger is not exported unless asked.
    let (f, mut l) = lines(d.path());
    l[2] = l[2].replacen("GET", "PUT", 1);
    put(&f, &l);
    let mut out = Vec::new();
    let e = export(
        d.path(),
        &ExportFilter::default(),
        Export::Csv,
        None,
        false,
        &mut out,
    )
    .unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
    let (r, _) = export(
        d.path(),
        &ExportFilter::default(),
        Export::Json,
        None,
        true,
        &mut out,
    )
    .unwrap();
    assert!(!r.ok());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// One sealed ledger, written once.
    fn ledger() -> &'static (tempfile::TempDir, Vec<u8>) {
        static L: std::sync::OnceLock<(tempfile::TempDir, Vec<u8>)> = std::sync::OnceLock::new();
        L.get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            write(d.path(), &key(), &sample(12));
            let f = fixative_evidence::ledger_files(d.path())
                .unwrap()
                .pop()
                .unwrap();
            let bytes = std::fs::read(f).unwrap();
            (d, bytes)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any changed byte of a sealed ledger is detected (never a panic),
        /// at or before the record it is in.
        #[test]
        fn any_changed_byte_is_detected(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (_, original) = ledger();
            let d = tempfile::tempdir().unwrap();
            let mut bytes = original.clone();
            let i = pos.index(bytes.len());
            bytes[i] ^= flip;
            // The record the byte belongs to.
            let record = original[..i].iter().filter(|b| **b == b'\n').count() as u64;
            std::fs::write(d.path().join("evidence-20261130-000001.jsonl"), &bytes).unwrap();
            let r = verify(d.path(), None).unwrap();
            let b = r.broken.clone();
            prop_assert!(b.is_some() || r.unfinished_tail, "undetected change at byte {i}: {r}");
            if let Some(b) = b {
                prop_assert!(b.n <= record.max(1) + 1, "byte {i} of record {record} reported at {}: {}", b.n, b.why);
            }
        }

        /// Arbitrary bytes never panic the reader.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..4096)) {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("evidence-20261130-000001.jsonl"), &data).unwrap();
            let _ = verify(d.path(), None).unwrap();
        }
    }
}
