//! `fixative ip-ranges update DIR`: fetches the crawler IP-range lists the
//! catalog names (`[[ip_range_source]]`) into a directory, atomically, for
//! `detection.ip_ranges_dir`. The running proxy notices the new files and
//! reloads them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use fixative_config::Config;

/// Largest list accepted (Google's largest is ~100 KiB).
const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Fetches every list (or those named in `only`) into `dir`.
pub fn update(cfg: &Config, dir: &Path, only: &[String], timeout: Duration) -> ExitCode {
    let catalog = match fixative_rules::Catalog::with_files(&cfg.detection.catalog_files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("catalog: {e}");
            return ExitCode::from(2);
        }
    };
    let sources: Vec<_> = catalog
        .ip_range_sources()
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.file))
        .collect();
    if sources.is_empty() {
        eprintln!("no IP-range source matches {only:?}");
        return ExitCode::from(2);
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let client = match reqwest::blocking::Client::builder()
        .timeout(timeout)
        .user_agent(concat!(
            "Fixative/",
            env!("CARGO_PKG_VERSION"),
            " (ip-ranges update)"
        ))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    for s in &sources {
        match fetch_one(&client, &s.url, dir, &s.file) {
            Ok((n, date)) => println!(
                "{}: {n} prefixes{} from {}",
                s.file,
                date.map(|d| format!(", created {d}")).unwrap_or_default(),
                s.url
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e} (kept the previous copy, if any)", s.file);
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} lists failed", sources.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Downloads, validates (the proxy's own parser) and renames into place.
fn fetch_one(
    client: &reqwest::blocking::Client,
    url: &str,
    dir: &Path,
    file: &str,
) -> Result<(usize, Option<String>), String> {
    let resp = client.get(url).send().map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    if resp.content_length().is_some_and(|l| l > MAX_BYTES) {
        return Err(format!("{url}: over {MAX_BYTES} bytes"));
    }
    let mut body = Vec::new();
    use std::io::Read;
    resp.take(MAX_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("{url}: {e}"))?;
    if body.len() as u64 > MAX_BYTES {
        return Err(format!("{url}: over {MAX_BYTES} bytes"));
    }
    let text = String::from_utf8(body).map_err(|_| format!("{url}: not UTF-8"))?;
    let nets = fixative_rules::netset::parse_ranges(&text)
        .map_err(|e| format!("{url}: not an IP-range list: {e}"))?;
    let date =
        fixative_rules::netset::creation_time(&text).and_then(fixative_evidence::unix_rfc3339);
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(file))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", dir.display()));
    }
    Ok((nets.len(), date))
}
