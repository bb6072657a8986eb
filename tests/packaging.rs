//! The deployment files in `packaging/`: the systemd units verified by
//! `systemd-analyze` (when this machine has it; Debian does) with their
//! hardening scored, and the container file's structure checked (a build
//! needs a container runtime and network access to base images, which the
//! test machines do not have; see docs/operators.md).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap()
}

/// `key=value` lines of a unit (comments skipped), in order.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn value<'a>(d: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    d.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The units with `/usr/bin/fixative` replaced by the binary under test,
/// in a temporary directory (systemd-analyze checks that commands exist).
fn staged() -> (tempfile::TempDir, Vec<PathBuf>) {
    let d = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for f in [
        "fixative.service",
        "fixative-ip-ranges.service",
        "fixative-ip-ranges.timer",
    ] {
        let text = read(&format!("packaging/{f}"))
            .replace("/usr/bin/fixative", env!("CARGO_BIN_EXE_fixative"));
        let p = d.path().join(f);
        std::fs::write(&p, text).unwrap();
        out.push(p);
    }
    (d, out)
}

#[test]
fn the_service_unit_has_the_hardening_operators_expect() {
    let unit = read("packaging/fixative.service");
    let d = directives(&unit);
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectory", "fixative"),
    ] {
        assert_eq!(value(&d, key), [want], "{key}");
    }
    assert_eq!(
        value(&d, "ExecStart"),
        ["/usr/bin/fixative run --config /etc/fixative/fixative.toml"]
    );
    assert_eq!(
        value(&d, "ExecStartPre"),
        ["/usr/bin/fixative check --config /etc/fixative/fixative.toml"]
    );
    // The timer's service runs as the same dynamic user, so the lists it
    // writes are the proxy's.
    let ranges = directives(&read("packaging/fixative-ip-ranges.service"));
    assert_eq!(value(&ranges, "User"), value(&d, "User"));
    assert_eq!(value(&ranges, "DynamicUser"), ["yes"]);
    assert!(
        value(&ranges, "ExecStart")[0].contains("ip-ranges update /var/lib/fixative/ip-ranges")
    );
}

#[test]
fn systemd_analyze_verifies_the_units_and_scores_the_hardening() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: unit verification skipped");
        return;
    }
    let (_d, units) = staged();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings: any output fails.
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    // Exposure as systemd scores it (0 = fully locked down, 10 = none):
    // at most 2.5 for the proxy, 3.0 for the fetcher (it needs the network
    // out).
    for (unit, threshold) in [(&units[0], "25"), (&units[1], "30")] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--threshold={threshold}"))
            .arg(unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            unit.display(),
            text.lines().last().unwrap_or("")
        );
        assert!(text.contains("Overall exposure level"), "{text}");
    }
    // A unit with a mistake is caught (the check can fail).
    let bad = units[0].with_file_name("bad.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&units[0])
            .unwrap()
            .replace("ProtectSystem=strict", "ProtectSystem=stict"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
}

#[test]
fn the_container_file_is_multi_stage_small_and_non_root() {
    let c = read("packaging/Containerfile");
    let lines: Vec<&str> = c
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert!(froms[0].ends_with(" AS build"));
    assert!(froms[1].contains("distroless/cc"), "a small runtime image");
    let runtime: Vec<&&str> = lines.iter().skip_while(|l| *l != froms[1]).collect();
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .unwrap_or("root");
    assert!(user != "root" && user != "0", "runs as {user}: {runtime:?}");
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=build")));
    assert!(
        !runtime.iter().any(|l| l.starts_with("RUN ")),
        "nothing runs in the runtime stage"
    );
    // The runtime image has glibc and libgcc only: the binary must need
    // nothing else.
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_fixative"))
        .output();
    if let Ok(ldd) = ldd {
        let text = String::from_utf8_lossy(&ldd.stdout);
        for line in text.lines().filter(|l| l.contains("=>")) {
            let lib = line.split_whitespace().next().unwrap_or("");
            assert!(
                [
                    "libc.so",
                    "libm.so",
                    "libgcc_s.so",
                    "libdl.so",
                    "libpthread.so",
                    "librt.so"
                ]
                .iter()
                .any(|ok| lib.starts_with(ok)),
                "the binary links {lib}, which distroless/cc does not ship"
            );
        }
    }
    assert!(read(".dockerignore").contains("target/"));
    // A build when a container runtime answers (not on the CI machines).
    let docker = Command::new("docker").arg("info").output();
    if docker.is_ok_and(|o| o.status.success())
        && std::env::var_os("FIXATIVE_BUILD_CONTAINER").is_some()
    {
        let out = Command::new("docker")
            .args([
                "build",
                "-f",
                "packaging/Containerfile",
                "-t",
                "fixative:test",
                ".",
            ])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("container build skipped (set FIXATIVE_BUILD_CONTAINER=1 with a running docker)");
    }
}
