//! The command line: check, config print-default.

mod common;

use std::process::Command;

#[test]
fn check_reports_every_error_with_key_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"0.0.0.0\"]\nthreads = 0\n\n[[site]]\nname = \"g\"\nhosts = [\"g.example\"]\nupstreams = [\"127.0.0.1:3000\"]\n\n[[site]]\nname = \"h\"\nhosts = [\"g.example\"]\nupstreams = [\"10.0.0.5\"]\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "3 configuration errors",
        "server.listen[0]: \"0.0.0.0\" has no port (line 2)",
        "server.threads: 0 is out of range (1 to 1024) (line 3)",
        "site[1].hosts[0]: \"g.example\" is already a host of site[0] (line 12)",
        "site[1].upstreams[0]: \"10.0.0.5\" has no port (line 13)",
        "protector.secret: not set: site(s) g, h can serve protected images",
    ] {
        if want.starts_with('3') {
            continue;
        }
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("5 configuration errors"), "{err}");
}

/// `check` builds the whole runtime, as `run` does: a catalog file with
/// two bad entries and an unreadable network database are reported by
/// both, every error with its key and line.
#[test]
fn check_and_run_agree_on_data_files_and_report_every_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.toml"),
        "[[crawler]]\nname = \"A\"\noperator = \"x\"\ncategory = \"ai-training\"\nuaa = [\"Abot\"]\n\n[[crawler]]\nname = \"B\"\noperator = \"x\"\ncategory = \"no-such-category\"\nua = [\"Bbot\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("asn.mmdb"), b"not a database").unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:{}\"\n\n[detection]\ncatalog_files = [\"extra.toml\"]\nasn_db = \"asn.mmdb\"\n\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:2\"]\npolicy = \"off\"\n",
            common::free_port(),
            common::free_port()
        ),
    )
    .unwrap();
    for cmd in ["check", "run"] {
        let out = Command::new(common::bin())
            .args([cmd, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        for want in [
            "3 configuration errors",
            "detection.catalog_files[0]:",
            "line 1: crawler[0] (\"A\"): unknown field `uaa`",
            "line 7: crawler[1] (\"B\"): unknown variant `no-such-category`",
            "(line 6)",
            "detection.asn_db:",
            "(line 7)",
        ] {
            assert!(err.contains(want), "{cmd}: missing {want:?} in:\n{err}");
        }
    }
}

/// `explain` routes like the proxy: an exact host beats a wildcard site
/// listed before it, and a longer wildcard beats a shorter one.
#[test]
fn explain_picks_the_site_the_proxy_picks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:1\"]\nadmin = \"127.0.0.1:2\"\n[[site]]\nname = \"wide\"\nhosts = [\"*.example.com\"]\nupstreams = [\"127.0.0.1:3\"]\npolicy = \"off\"\n[[site]]\nname = \"exact\"\nhosts = [\"mara.example.com\"]\nupstreams = [\"127.0.0.1:4\"]\npolicy = \"observe\"\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["explain", "--host", "Mara.Example.com:443", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("site:     exact (policy observe)"), "{text}");
}

#[test]
fn secrets_have_no_public_default() {
    // `fixative secret` prints a fresh 256-bit key each time.
    let new_secret = || {
        let out = Command::new(common::bin()).arg("secret").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (new_secret(), new_secret());
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let site = "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:2\"]\n";
    for (protector, want) in [
        (
            "",
            "protector.secret: not set: site(s) a can serve protected images",
        ),
        (
            "[protector]\nsecret = \"fixative-default-secret\"\n",
            "protector.secret: is a publicly known value",
        ),
        (
            "[protector]\nsecret = \"short\"\n",
            "protector.secret: must be at least 16 characters",
        ),
    ] {
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\nadmin = \"127.0.0.1:2\"\n{protector}{site}"
            ),
        )
        .unwrap();
        let out = Command::new(common::bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // A key from a file works; so does a site that cannot cloak, without one.
    std::fs::write(dir.path().join("key"), format!("{a}\n")).unwrap();
    for cfg in [
        format!("[protector]\nsecret_file = \"key\"\n{site}"),
        format!("{site}policy = \"off\"\n"),
    ] {
        std::fs::write(
            &path,
            format!("[server]\nlisten = [\"127.0.0.1:1\"]\nadmin = \"127.0.0.1:2\"\n{cfg}"),
        )
        .unwrap();
        let out = Command::new(common::bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_summarises_a_valid_config_and_the_default() {
    let out = Command::new(common::bin()).arg("check").output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.starts_with("<embedded default>: ok, 1 site (demo), listeners http://127.0.0.1:8080"),
        "{s}"
    );
}

#[test]
fn print_default_round_trips_through_check() {
    let out = Command::new(common::bin())
        .args(["config", "print-default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# Fixative configuration."));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn explain_shows_signals_weights_and_rule() {
    let out = Command::new(common::bin())
        .args([
            "explain",
            "--ua",
            "Mozilla/5.0 (compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            "--ip",
            "192.0.2.9",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"]["block"], 403);
    assert_eq!(v["crawler"], "ClaudeBot");
    assert_eq!(v["rule"], "block-ai-crawlers");
    assert_eq!(v["reasons"][0]["signal"], "ua.catalog");
    assert_eq!(v["reasons"][0]["weight"], 100);

    let out = Command::new(common::bin())
        .args([
            "explain",
            "--ua",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "--header",
            "Accept: text/html",
            "--header",
            "Accept-Language: fr",
            "--header",
            "Sec-Fetch-Mode: navigate",
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("action:   limit")
            && s.contains("score:    0")
            && s.contains("rule:     limit-everyone"),
        "{s}"
    );
}

#[test]
fn mismatched_tls_certificate_and_key_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), a.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), b.signing_key.serialize_pem()).unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = []\ntls = { listen = \"127.0.0.1:1\", cert = \"cert.pem\", key = \"key.pem\" }\n[protector]\nsecret = \"test-only-watermark-key-0123456789\"\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:2\"]\n",
    )
    .unwrap();
    for cmd in ["check", "run"] {
        let out = Command::new(common::bin())
            .args([cmd, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("server.tls:") && err.contains("cert.pem"),
            "{cmd}: {err}"
        );
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
}

#[test]
fn replay_of_a_sample_log_gives_the_expected_verdicts_and_summary() {
    let out = Command::new(common::bin())
        .args([
            "replay",
            "--format",
            "combined",
            "tests/fixtures/sample-combined.log",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 14);
    let rule = |n: usize| lines[n - 1]["rule"].as_str().unwrap_or("").to_string();
    assert_eq!(lines[0]["action"], "block");
    assert_eq!(lines[0]["crawler"], "GPTBot");
    assert_eq!(rule(4), "trusted-networks");
    assert_eq!(rule(6), "spoofed-crawler");
    // Line 10 hits the robots.txt trap; the same client's images are then cloaked.
    assert!(
        lines[9]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("behaviour.robots-trap")),
        "{}",
        lines[9]
    );
    assert_eq!(lines[10]["action"], "cloak");
    assert_eq!(lines[11]["action"], "cloak");
    assert_eq!(lines[12]["category"], "http-library");
    assert!(lines[13]["error"].is_string());
    // Header signals cannot fire on a combined log.
    assert!(lines.iter().all(|l| !l.to_string().contains("header.")));
    let summary = String::from_utf8_lossy(&out.stderr);
    for want in [
        "replayed 14 lines (1 unparsable)",
        "4  block",
        "2  cloak",
        "4  limit",
        "1  challenge",
        "2  allow",
        "3  ai-training",
        "1  spoofed-crawler",
        "3  Googlebot",
    ] {
        assert!(summary.contains(want), "missing {want:?} in\n{summary}");
    }
}

#[test]
fn replay_reads_jsonl_from_stdin_with_header_signals() {
    use std::io::Write;
    let mut child = Command::new(common::bin())
        .args(["replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sample.jsonl"
    ))
    .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["crawler"], "ClaudeBot");
    // A browser with its headers: no header signal (the stale-browser
    // signal follows the calendar, so the score is not pinned here).
    let reasons = |n: usize| lines[n]["reasons"].to_string();
    assert!(!reasons(1).contains("header."), "{}", lines[1]);
    // A Chrome UA without Accept, Accept-Language, Sec-Fetch-Mode.
    for s in [
        "header.no-accept:",
        "header.no-accept-language",
        "header.no-sec-fetch",
    ] {
        assert!(reasons(2).contains(s), "{s}: {}", lines[2]);
    }
}

/// `[detection.weights]` changes a signal's weight, `explain` says so, and
/// a misspelt signal is an error with its line.
#[test]
fn weights_are_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let base = "[server]\nlisten = [\"127.0.0.1:1\"]\nadmin = \"127.0.0.1:2\"\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:3\"]\npolicy = \"off\"\n";
    std::fs::write(
        &path,
        format!("{base}[detection.weights]\n\"ua.self-declared-bot\" = 77\n"),
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args([
            "explain",
            "--ua",
            "NewThing/1.0 (+https://new.example)",
            "--json",
            "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["reasons"][0];
    assert_eq!(r["signal"], "ua.self-declared-bot");
    assert_eq!(r["weight"], 77);
    assert_eq!(r["source"], "configured");
    assert_eq!(v["category"], "unknown-bot");
    let text = Command::new(common::bin())
        .args([
            "explain",
            "--ua",
            "NewThing/1.0 (+https://new.example)",
            "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("[configured]"));
    std::fs::write(
        &path,
        format!("{base}[detection.weights]\n\"ua.self-declared-bots\" = 77\n\"http.1.0\" = 5000\n"),
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("detection.weights.ua.self-declared-bots: unknown signal")
            && err.contains("(line 10)"),
        "{err}"
    );
    assert!(
        err.contains("weight 5000 is out of range (-1000 to 1000) (line 11)"),
        "{err}"
    );
}

/// `explain` reads a pass cookie like the proxy: valid, expired or
/// forged, and what it means for an image request.
#[test]
fn explain_shows_the_pass_state() {
    use fixative_rules::pass::{Binding, Flags, Keys};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\nadmin = \"127.0.0.1:2\"\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:3\"]\n[protector]\nsecret = \"{}\"\n",
            common::TEST_SECRET
        ),
    )
    .unwrap();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keys = Keys::new(common::TEST_SECRET, &[]);
    let me = Binding::of("192.0.2.9".parse().unwrap(), ua);
    let explain = |cookie: &str| {
        let out = Command::new(common::bin())
            .args([
                "explain",
                "--ip",
                "192.0.2.9",
                "--path",
                "/art/a.png",
                "--ua",
                ua,
            ])
            .args(["--header", "Accept: image/avif,image/webp,*/*"])
            .args([
                "--header",
                &format!("Cookie: theme=dark; fixative_pass={cookie}"),
            ])
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let valid = keys.mint_pass(me, Flags::default(), now, 600).unwrap();
    let s = explain(&valid);
    assert!(s.contains("pass:     valid"), "{s}");
    let old = keys
        .mint_pass(me, Flags::default(), now - 7200, 600)
        .unwrap();
    let s = explain(&old);
    assert!(s.contains("pass:     expired"), "{s}");
    assert!(s.contains("grace:"), "{s}");
    let auto = keys.mint_pass(me, Flags::AUTOMATION, now, 600).unwrap();
    let s = explain(&auto);
    assert!(s.contains("pass:     automation"), "{s}");
    assert!(s.contains("rule:     cloak-images-for-automation"), "{s}");
    let s = explain("AAAA");
    assert!(s.contains("pass:     malformed"), "{s}");
}
