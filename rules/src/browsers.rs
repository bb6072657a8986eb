//! Minimum browser versions that still count as current, derived from the
//! calendar and a release model (`rules/data/browsers.toml`), not from a
//! constant that ages with the binary.

use serde::Deserialize;

/// The shipped release model.
pub const DEFAULT_MODEL: &str = include_str!("../data/browsers.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Release {
    major: u32,
    date: String,
    days_per_major: u32,
    supported_majors: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Model {
    /// Judge as of this date instead of today (replaying an old log).
    today: Option<String>,
    chrome: Release,
    firefox: Release,
}

/// The oldest major versions counted as current on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinVersions {
    /// Chrome and Chromium-based browsers.
    pub chrome: u32,
    /// Firefox.
    pub firefox: u32,
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn days_of(date: &str) -> Option<i64> {
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

impl Release {
    fn min_on(&self, today: i64) -> Result<u32, String> {
        let start = days_of(&self.date)
            .ok_or_else(|| format!("{:?} is not a YYYY-MM-DD date", self.date))?;
        if self.days_per_major == 0 {
            return Err("days_per_major must be at least 1".into());
        }
        let elapsed = (today - start).max(0);
        let expected = i64::from(self.major) + elapsed / i64::from(self.days_per_major);
        let min = expected - i64::from(self.supported_majors);
        Ok(u32::try_from(min.max(0)).unwrap_or(0))
    }
}

impl MinVersions {
    /// The minimum versions on `today` (days since 1970-01-01) under the
    /// release model in `toml`.
    pub fn from_model(toml_src: &str, today: i64) -> Result<MinVersions, String> {
        let m: Model = toml::from_str(toml_src).map_err(|e| e.to_string())?;
        let today = match &m.today {
            Some(d) => {
                days_of(d).ok_or_else(|| format!("today: {d:?} is not a YYYY-MM-DD date"))?
            }
            None => today,
        };
        Ok(MinVersions {
            chrome: m
                .chrome
                .min_on(today)
                .map_err(|e| format!("[chrome]: {e}"))?,
            firefox: m
                .firefox
                .min_on(today)
                .map_err(|e| format!("[firefox]: {e}"))?,
        })
    }

    /// Days since 1970-01-01 of a `YYYY-MM-DD` date.
    pub fn day(date: &str) -> Option<i64> {
        days_of(date)
    }

    /// Today, by the system clock.
    pub fn today() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d.as_secs() / 86_400) as i64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_follows_the_calendar() {
        let on = |d: &str| MinVersions::from_model(DEFAULT_MODEL, days_of(d).unwrap()).unwrap();
        // Late 2026: Chrome ~155 is current, three years back is ~120;
        // Firefox ~157, three and a half years back ~115 (ESR).
        let late_2026 = on("2026-11-25");
        assert!((118..=122).contains(&late_2026.chrome), "{late_2026:?}");
        assert!((113..=117).contains(&late_2026.firefox), "{late_2026:?}");
        // A year later the bar has moved by about a year of versions.
        let late_2027 = on("2027-11-25");
        assert!((11..=12).contains(&(late_2027.chrome - late_2026.chrome)));
        assert_eq!(days_of("1970-01-01"), Some(0));
        assert_eq!(days_of("2000-03-01"), Some(11_017));
        assert!(MinVersions::from_model("[chrome]\nmajor = 1", 0).is_err());
    }
}
