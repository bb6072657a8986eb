//! `fixative evidence verify|export|keygen`.

use std::path::Path;
use std::process::ExitCode;

use fixative_evidence::{Export, ExportFilter};

fn pinned(key: Option<&Path>) -> Result<Option<fixative_evidence::PublicKey>, ExitCode> {
    let Some(path) = key else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("{}: {e}", path.display());
        ExitCode::from(2)
    })?;
    fixative_evidence::public_key_from_text(&text)
        .map(Some)
        .map_err(|e| {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        })
}

/// Checks the chain and the seals; exit 1 names the first broken record.
pub fn verify(dir: &Path, key: Option<&Path>, json: bool) -> ExitCode {
    let key = match pinned(key) {
        Ok(k) => k,
        Err(c) => return c,
    };
    match fixative_evidence::verify(dir, key.as_ref()) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{r}");
                if key.is_none() && !r.keys.is_empty() {
                    println!(
                        "(pass --public-key to require the operator's key; without it, any key that signs consistently is accepted)"
                    );
                }
            }
            if r.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Arguments of `evidence export`.
pub struct ExportArgs<'a> {
    pub crawler: Option<String>,
    pub site: Option<String>,
    pub watermark: Option<String>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub format: Export,
    pub key: Option<&'a Path>,
    pub unverified: bool,
}

/// Writes the visits a filter keeps to stdout.
pub fn export(dir: &Path, a: &ExportArgs<'_>) -> ExitCode {
    let key = match pinned(a.key) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let time = |s: Option<&str>, flag: &str| match s.map(fixative_evidence::parse_time) {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(t)),
        Some(Err(e)) => {
            eprintln!("{flag}: {e}");
            Err(ExitCode::from(2))
        }
    };
    let since = match time(a.since, "--since") {
        Ok(t) => t,
        Err(c) => return c,
    };
    let until = match time(a.until, "--until") {
        Ok(t) => t,
        Err(c) => return c,
    };
    let filter = ExportFilter {
        crawler: a.crawler.clone(),
        site: a.site.clone(),
        watermark: a.watermark.clone(),
        since,
        until,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match fixative_evidence::export(dir, &filter, a.format, key.as_ref(), a.unverified, &mut out) {
        Ok((r, n)) => {
            drop(out);
            eprintln!(
                "{n} visits exported; ledger {}",
                if r.ok() { "verified" } else { "NOT verified" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            drop(out);
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a new private key (mode 0600) and prints its public key.
pub fn keygen(path: &Path) -> ExitCode {
    if path.exists() {
        eprintln!("{} exists; not overwriting a key", path.display());
        return ExitCode::from(2);
    }
    let (private, public, vk) = match fixative_evidence::generate_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(private.as_bytes()));
    if let Err(e) = written {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let pub_path = path.with_extension("pub");
    if let Err(e) = std::fs::write(&pub_path, &public) {
        eprintln!("{}: {e}", pub_path.display());
        return ExitCode::FAILURE;
    }
    println!(
        "private key: {} (keep it off shared disks; evidence.signing_key_file)\npublic key:  {} ({})",
        path.display(),
        pub_path.display(),
        fixative_evidence::public_key_base64(&vk)
    );
    ExitCode::SUCCESS
}
