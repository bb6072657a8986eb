//! Classifies user agents read from standard input, one per line, with the
//! shipped catalog and the self-declared bot rules; prints
//! `category<TAB>crawler<TAB>user agent`. A tool for checking the detector
//! against a list: `cargo run -p fixative-rules --example classify < uas.txt`.

use std::io::BufRead;

fn main() {
    let catalog = match fixative_rules::catalog::Catalog::default_catalog() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("catalog: {e}");
            std::process::exit(2);
        }
    };
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let ua = line.trim();
        if ua.is_empty() {
            continue;
        }
        let (cat, name) = match catalog.match_ua(ua) {
            Some(m) if !m.weak => (m.crawler.category.as_str(), m.crawler.name.as_str()),
            _ => match fixative_rules::selfdeclared::self_declared(ua) {
                Some(why) => ("unknown-bot", why),
                None => ("-", "-"),
            },
        };
        println!("{cat}\t{name}\t{ua}");
    }
}
