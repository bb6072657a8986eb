//! Maps key paths back to line numbers in the TOML source.

use toml_edit::{Document, Item};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An index into an array or an array of tables.
    Index(usize),
}

/// A key path such as `site[1].upstreams[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The empty (root) path.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Span lookups over a parsed document.
pub struct Spans {
    doc: Option<Document<String>>,
    line_starts: Vec<usize>,
}

impl Spans {
    /// Parses `src` for span lookups; a source that does not parse yields no lines.
    pub fn new(src: &str) -> Self {
        let mut line_starts = vec![0];
        for (i, b) in src.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        Spans {
            doc: Document::parse(src.to_string()).ok(),
            line_starts,
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of_offset(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The line of the deepest part of `path` present in the document.
    ///
    /// For a missing key this is the line of its enclosing table, which is
    /// where the operator has to add it.
    pub fn line(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item: &Item = doc.as_item();
        let mut best = None;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => {
                    // Prefer the key's own span (the table header for a
                    // table) when the value has none.
                    let key_span = item
                        .as_table_like()
                        .and_then(|t| t.get_key_value(k))
                        .and_then(|(key, _)| key.span());
                    if let Some(s) = key_span {
                        best = Some(s.start);
                    }
                    item.get(k.as_str())
                }
                Seg::Index(i) => item.get(*i),
            };
            match next {
                Some(n) => {
                    if let Some(s) = n.span() {
                        best = Some(s.start);
                    }
                    item = n;
                }
                None => break,
            }
        }
        best.map(|o| self.line_of_offset(o))
    }
}

impl Spans {
    /// The deepest key path whose value covers byte `offset`, if any.
    ///
    /// Used to name the key of a serde error, which only carries a span.
    pub fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let doc = self.doc.as_ref()?;
        let mut path = KeyPath::root();
        let mut item: &Item = doc.as_item();
        'descend: loop {
            if let Some(t) = item.as_table_like() {
                for (k, v) in t.iter() {
                    let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
                    let covers = |s: Option<std::ops::Range<usize>>| {
                        s.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
                    };
                    if covers(key_span.clone()) {
                        return Some(path.key(k));
                    }
                    if covers(v.span()) || contains_offset(v, offset) {
                        path = path.key(k);
                        item = v;
                        continue 'descend;
                    }
                }
            } else if let Some(aot) = item.as_array_of_tables() {
                for (i, t) in aot.iter().enumerate() {
                    if t.span()
                        .is_some_and(|s| s.start <= offset && offset < s.end)
                        || table_contains(t, offset)
                    {
                        path = path.index(i);
                        // Re-borrow as an item to continue.
                        match item.get(i) {
                            Some(n) => {
                                item = n;
                                continue 'descend;
                            }
                            None => break 'descend,
                        }
                    }
                }
            } else if let Some(arr) = item.as_array() {
                for (i, v) in arr.iter().enumerate() {
                    if v.span()
                        .is_some_and(|s| s.start <= offset && offset < s.end)
                    {
                        return Some(path.index(i));
                    }
                }
            }
            break;
        }
        if path.0.is_empty() { None } else { Some(path) }
    }
}

fn table_contains(t: &toml_edit::Table, offset: usize) -> bool {
    t.iter().any(|(_, v)| contains_offset(v, offset))
        || t.iter().any(|(k, _)| {
            t.get_key_value(k)
                .and_then(|(key, _)| key.span())
                .is_some_and(|s| s.start <= offset && offset < s.end)
        })
}

fn contains_offset(item: &Item, offset: usize) -> bool {
    if item
        .span()
        .is_some_and(|s| s.start <= offset && offset < s.end)
    {
        return true;
    }
    match item {
        Item::Table(t) => table_contains(t, offset),
        Item::ArrayOfTables(a) => a.iter().any(|t| table_contains(t, offset)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_paths() {
        let src = "[server]\nlisten = [\"a\",\n  \"b\"]\n\n[[site]]\nname = \"x\"\n\n[[site]]\nname = \"y\"\nupstreams = [\"1\", \"2\"]\n";
        let s = Spans::new(src);
        assert_eq!(
            s.line(&KeyPath::root().key("server").key("listen").index(1)),
            Some(3)
        );
        assert_eq!(
            s.line(&KeyPath::root().key("site").index(1).key("name")),
            Some(9)
        );
        assert_eq!(
            s.line(
                &KeyPath::root()
                    .key("site")
                    .index(1)
                    .key("upstreams")
                    .index(1)
            ),
            Some(10)
        );
        let p = KeyPath::root()
            .key("site")
            .index(1)
            .key("upstreams")
            .index(0);
        assert_eq!(p.to_string(), "site[1].upstreams[0]");
    }
}
