//! Configuration errors that name the key path and the line.

use std::fmt;

/// One problem found in a configuration file.
///
/// Displayed as `site[1].upstreams[0]: "10.0.0.5" has no port (line 14)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// Dotted key path, e.g. `site[1].upstreams[0]`; empty for whole-file problems.
    pub path: String,
    /// What is wrong, in words an operator understands.
    pub message: String,
    /// 1-based line in the source file, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Every problem found while loading one configuration source.
///
/// All problems are collected and reported together, so an operator fixes a
/// file in one pass instead of one error at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from (a path, or `<embedded default>`).
    pub source_name: String,
    /// The problems, in file order where known.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {} configuration error{}",
            self.source_name,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
