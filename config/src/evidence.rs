//! `[evidence]`: the evidence ledger of AI crawlers' visits.

use std::path::PathBuf;
use std::time::Duration;

use crate::challenge::in_range;
use crate::raw::RawEvidence;
use crate::spans::KeyPath;
use crate::validate::Ctx;

/// `[evidence]`: where and how the ledger is written; off without `dir`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evidence {
    /// The ledger's directory.
    pub dir: PathBuf,
    /// The Ed25519 private key's PKCS#8 PEM (from `signing_key_file`).
    pub signing_key_pem: String,
    /// Where the key was read from (for messages).
    pub signing_key_file: PathBuf,
    /// Seal after this many lines.
    pub seal_every: u64,
    /// Seal unsealed lines at least this often.
    pub seal_interval: Duration,
    /// A new file past this size (and every UTC day).
    pub max_file_bytes: u64,
    /// The oldest files are removed beyond this total.
    pub max_total_bytes: u64,
    /// Visits waiting for the writer at most (more are dropped, counted,
    /// and the next line notes the gap).
    pub queue: usize,
    /// Record every request with a non-allow verdict too, not only those of
    /// crawlers in the site's reserved categories.
    pub scrapers: bool,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("dir", &self.dir)
            .field("signing_key_file", &self.signing_key_file)
            .field("seal_every", &self.seal_every)
            .field("seal_interval", &self.seal_interval)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("max_total_bytes", &self.max_total_bytes)
            .finish_non_exhaustive()
    }
}

/// Validates `[evidence]`: `None` when the ledger is off.
pub(crate) fn validate_evidence(ctx: &mut Ctx<'_>, e: &RawEvidence) -> Option<Evidence> {
    let p = KeyPath::root().key("evidence");
    let Some(dir) = &e.dir else {
        if e.signing_key_file.is_some() {
            ctx.err(
                &p.key("dir"),
                "the ledger needs a directory (signing_key_file is set)",
            );
        }
        return None;
    };
    let dir = ctx.resolve_path(dir);
    if dir.exists() && !dir.is_dir() {
        ctx.err(
            &p.key("dir"),
            format!("{} is not a directory", dir.display()),
        );
    }
    let (signing_key_file, signing_key_pem) = match &e.signing_key_file {
        None => {
            ctx.err(
                &p.key("signing_key_file"),
                "the ledger is signed: give an Ed25519 private key (PKCS#8 PEM), e.g. from `fixative evidence keygen KEYFILE`",
            );
            (PathBuf::new(), String::new())
        }
        Some(f) => {
            let path = ctx.resolve_path(f);
            match std::fs::read_to_string(&path) {
                Ok(pem) if pem.contains("-----BEGIN PRIVATE KEY-----") => (path, pem),
                Ok(_) => {
                    ctx.err(
                        &p.key("signing_key_file"),
                        format!(
                            "{} is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)",
                            path.display()
                        ),
                    );
                    (path, String::new())
                }
                Err(err) => {
                    ctx.err(
                        &p.key("signing_key_file"),
                        format!("cannot read {}: {err}", path.display()),
                    );
                    (path, String::new())
                }
            }
        }
    };
    let seal_every = in_range(ctx, &p.key("seal_every"), e.seal_every, 1, 1_000_000)
        .map(|v| v as u64)
        .unwrap_or(1000);
    let seal_interval = ctx.duration(
        &p.key("seal_interval"),
        &e.seal_interval,
        Duration::from_secs(86_400),
    );
    if seal_interval < Duration::from_millis(100) && !ctx.has_problem_at(&p.key("seal_interval")) {
        ctx.err(&p.key("seal_interval"), "must be at least 100ms");
    }
    let max_file_bytes = in_range(
        ctx,
        &p.key("max_file_bytes"),
        e.max_file_bytes,
        64 * 1024,
        1 << 40,
    )
    .map(|v| v as u64)
    .unwrap_or(64 << 20);
    let max_total_bytes = in_range(
        ctx,
        &p.key("max_total_bytes"),
        e.max_total_bytes,
        1 << 20,
        1 << 50,
    )
    .map(|v| v as u64)
    .unwrap_or(1 << 30);
    if max_total_bytes < max_file_bytes.saturating_mul(2)
        && !ctx.has_problem_at(&p.key("max_total_bytes"))
    {
        ctx.err(
            &p.key("max_total_bytes"),
            "must hold at least two files (2 × max_file_bytes)",
        );
    }
    let queue = in_range(ctx, &p.key("queue"), e.queue, 1, 1_000_000)
        .map(|v| v as usize)
        .unwrap_or(10_000);
    Some(Evidence {
        dir,
        signing_key_pem,
        signing_key_file,
        seal_every,
        seal_interval,
        max_file_bytes,
        max_total_bytes,
        queue,
        scrapers: e.scrapers,
    })
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";

    fn load(dir: &std::path::Path, extra: &str) -> Result<Config, String> {
        let base = "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\npolicy = \"off\"\n";
        Config::from_toml(&format!("{base}{extra}"), "t.toml", Some(dir)).map_err(|e| e.to_string())
    }

    #[test]
    fn the_ledger_is_off_by_default_and_needs_a_key() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path(), "").unwrap().evidence.is_none());
        let e = load(d.path(), "[evidence]\ndir = \"ev\"\n").unwrap_err();
        assert!(
            e.contains("evidence.signing_key_file") && e.contains("keygen"),
            "{e}"
        );
        assert!(e.contains("line 10"), "{e}");
        std::fs::write(d.path().join("k.pem"), KEY).unwrap();
        let c = load(
            d.path(),
            "[evidence]\ndir = \"ev\"\nsigning_key_file = \"k.pem\"\n",
        )
        .unwrap();
        let ev = c.evidence.unwrap();
        assert_eq!(ev.dir, d.path().join("ev"));
        assert_eq!(ev.seal_every, 1000);
        assert_eq!(ev.seal_interval, std::time::Duration::from_secs(60));
        assert_eq!(ev.queue, 10_000);
        assert!(!ev.scrapers);
    }

    #[test]
    fn bad_values_are_named_with_their_keys() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("k.pem"), KEY).unwrap();
        std::fs::write(d.path().join("cert.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        for (extra, key) in [
            (
                "signing_key_file = \"cert.pem\"",
                "evidence.signing_key_file",
            ),
            (
                "signing_key_file = \"missing.pem\"",
                "evidence.signing_key_file",
            ),
            (
                "signing_key_file = \"k.pem\"\nseal_every = 0",
                "evidence.seal_every",
            ),
            (
                "signing_key_file = \"k.pem\"\nseal_interval = \"1ms\"",
                "evidence.seal_interval",
            ),
            (
                "signing_key_file = \"k.pem\"\nmax_file_bytes = 10",
                "evidence.max_file_bytes",
            ),
            (
                "signing_key_file = \"k.pem\"\nmax_file_bytes = 1048576\nmax_total_bytes = 1048576",
                "evidence.max_total_bytes",
            ),
            ("signing_key_file = \"k.pem\"\nqueue = 0", "evidence.queue"),
            ("signing_key_file = \"k.pem\"\nfrobnicate = 1", "frobnicate"),
        ] {
            let e = load(d.path(), &format!("[evidence]\ndir = \"ev\"\n{extra}\n")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = load(d.path(), "[evidence]\nsigning_key_file = \"k.pem\"\n").unwrap_err();
        assert!(e.contains("evidence.dir"), "{e}");
    }
}
