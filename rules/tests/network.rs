//! ASN and country signals from real MaxMind-format files, written for the
//! test with an independent writer (maxminddb-writer) and read by the
//! engine's real reader.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use fixative_config::Config;
use fixative_rules::{Action, Engine, RequestFacts};
use maxminddb_writer::Database;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Serialize;

#[derive(Serialize)]
struct AsnRecord {
    autonomous_system_number: u32,
    autonomous_system_organization: String,
}

#[derive(Serialize)]
struct CountryInner {
    iso_code: String,
}

#[derive(Serialize)]
struct CountryRecord {
    country: CountryInner,
}

enum Rec {
    Asn(u32, &'static str),
    Country(&'static str),
}

fn write_db(path: &Path, kind: &str, entries: Vec<(&str, Rec)>) {
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = kind.to_string();
    db.metadata.binary_format_major_version = 2;
    db.metadata.languages = vec!["en".into()];
    db.metadata
        .description
        .insert("en".into(), format!("Fixative test {kind}"));
    db.metadata.build_epoch = 1_764_000_000;
    for (net, rec) in entries {
        let data = match rec {
            Rec::Asn(n, org) => db.insert_value(AsnRecord {
                autonomous_system_number: n,
                autonomous_system_organization: org.to_string(),
            }),
            Rec::Country(code) => db.insert_value(CountryRecord {
                country: CountryInner {
                    iso_code: code.to_string(),
                },
            }),
        }
        .unwrap();
        db.insert_node(net.parse::<IpAddrWithMask>().unwrap(), data);
    }
    let f = std::fs::File::create(path).unwrap();
    db.write_to(f).unwrap();
}

fn engine(dir: &Path, extra: &str) -> Engine {
    write_db(
        &dir.join("asn.mmdb"),
        "GeoLite2-ASN",
        vec![
            (
                "::203.0.113.0/120",
                Rec::Asn(64500, "Example Cloud Hosting"),
            ),
            ("::198.51.100.0/120", Rec::Asn(64501, "Example Home ISP")),
            ("2001:db8::/32", Rec::Asn(64500, "Example Cloud Hosting")),
        ],
    );
    write_db(
        &dir.join("country.mmdb"),
        "GeoLite2-Country",
        vec![
            ("::203.0.113.0/120", Rec::Country("NL")),
            ("::198.51.100.0/120", Rec::Country("fr")),
        ],
    );
    let src = format!(
        "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\n\n[protector]\nsecret = \"unit-test-watermark-key-0123\"\n\n[detection]\nasn_db = \"asn.mmdb\"\ncountry_db = \"country.mmdb\"\ndatacenter_asns = {{ \"AS64500\" = 50 }}\n{extra}"
    );
    let cfg = Config::from_toml(&src, "t", Some(dir)).unwrap();
    Engine::new(&cfg).unwrap().as_of("2026-11-25").unwrap()
}

fn eval(e: &Engine, ip: &str, policy: &str) -> fixative_rules::Verdict {
    let ip: IpAddr = ip.parse().unwrap();
    let mut h = BTreeMap::new();
    h.insert("accept".to_string(), "text/html".to_string());
    h.insert("accept-language".to_string(), "en".to_string());
    h.insert("sec-fetch-mode".to_string(), "navigate".to_string());
    let facts = RequestFacts {
        now: Duration::from_secs(1),
        client_ip: ip,
        method: "GET",
        host: "a.test",
        path: "/",
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
        headers_known: true,
        header: &h,
        http10: false,
        rdns: fixative_rules::Rdns::Unknown,
        unix_time: 0,
        known: fixative_rules::Known::default(),
    };
    e.evaluate(&facts, policy)
}

#[test]
fn datacenter_asn_adds_its_weight_with_the_organisation() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), "");
    let v = eval(&e, "203.0.113.9", "default");
    let r = v
        .reasons
        .iter()
        .find(|r| r.signal == "network.datacenter-asn")
        .expect("signal");
    assert_eq!(r.weight, 50);
    assert_eq!(r.detail, "AS64500 Example Cloud Hosting");
    let v = eval(&e, "2001:db8::7", "default");
    assert_eq!(v.score, 50, "{v:?}");
    let v = eval(&e, "198.51.100.9", "default");
    assert_eq!(v.score, 0, "a home ISP is not a datacenter: {v:?}");
    let v = eval(&e, "192.0.2.1", "default");
    assert_eq!(v.score, 0, "unknown to the databases: {v:?}");
}

#[test]
fn rules_match_asn_and_country() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(
        dir.path(),
        "\n[policy.default]\n[[policy.default.rule]]\nname = \"geo\"\nmatch = { country = [\"FR\"] }\naction = \"block\"\nstatus = 451\n[[policy.default.rule]]\nname = \"cloud\"\nmatch = { asn = [64500] }\naction = \"observe\"\n",
    );
    let v = eval(&e, "198.51.100.9", "default");
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Block(451), Some("geo"))
    );
    let v = eval(&e, "203.0.113.9", "default");
    assert_eq!(
        (v.action, v.rule.as_deref()),
        (Action::Observe, Some("cloud"))
    );
    let v = eval(&e, "192.0.2.1", "default");
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn a_corrupt_database_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("asn.mmdb"), b"not a database").unwrap();
    let src = "[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\npolicy = \"off\"\n[detection]\nasn_db = \"asn.mmdb\"\n";
    let cfg = Config::from_toml(src, "t", Some(dir.path())).unwrap();
    let err = Engine::new(&cfg).unwrap_err();
    assert!(err.to_string().contains("asn.mmdb"), "{err}");
}

#[test]
fn network_info_names_the_as_for_evidence_records() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), "");
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    assert_eq!(
        e.network_info(ip),
        (Some(64500), Some("Example Cloud Hosting".to_string()))
    );
    let unknown: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(e.network_info(unknown), (None, None));
    // Without a database: nothing, and no lookup.
    let plain = Engine::with_default_config().unwrap();
    assert_eq!(plain.network_info(ip), (None, None));
}
