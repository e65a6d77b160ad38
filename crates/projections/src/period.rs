//! Reporting periods (CST calendar): a month `2026-10`, a quarter `2026-Q4`, a year `2026`.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Serialize, Serializer};

/// A reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// Year, month 1–12.
    Month(i32, u32),
    /// Year, quarter 1–4.
    Quarter(i32, u32),
    /// Year.
    Year(i32),
}

impl Period {
    /// The month containing a date.
    pub fn month_of(d: NaiveDate) -> Period {
        Period::Month(d.year(), d.month())
    }

    /// Whether a date falls in the period.
    pub fn contains(&self, d: NaiveDate) -> bool {
        match *self {
            Period::Month(y, m) => d.year() == y && d.month() == m,
            Period::Quarter(y, q) => d.year() == y && (d.month() - 1) / 3 + 1 == q,
            Period::Year(y) => d.year() == y,
        }
    }

    /// The month before a month (other periods: themselves).
    pub fn prev_month(&self) -> Period {
        match *self {
            Period::Month(y, 1) => Period::Month(y - 1, 12),
            Period::Month(y, m) => Period::Month(y, m - 1),
            other => other,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Month(y, m) => write!(f, "{y}-{m:02}"),
            Period::Quarter(y, q) => write!(f, "{y}-Q{q}"),
            Period::Year(y) => write!(f, "{y}"),
        }
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        let bad = || format!("`{}` is not a period such as 2026-10, 2026-Q4 or 2026", yipan_core::clip(s));
        let (y, rest) = match s.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (s, None),
        };
        let year: i32 = y.parse().map_err(|_| bad())?;
        if !(1949..=2200).contains(&year) {
            return Err(bad());
        }
        match rest {
            None => Ok(Period::Year(year)),
            Some(r) if r.starts_with(['Q', 'q']) => match r[1..].parse::<u32>() {
                Ok(q @ 1..=4) => Ok(Period::Quarter(year, q)),
                _ => Err(bad()),
            },
            Some(r) => match r.parse::<u32>() {
                Ok(m @ 1..=12) => Ok(Period::Month(year, m)),
                _ => Err(bad()),
            },
        }
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let d: NaiveDate = "2026-11-20".parse().unwrap();
        assert_eq!("2026-11".parse::<Period>().unwrap(), Period::Month(2026, 11));
        assert!("2026-Q4".parse::<Period>().unwrap().contains(d));
        assert!("2026".parse::<Period>().unwrap().contains(d));
        assert!(!"2026-10".parse::<Period>().unwrap().contains(d));
        assert!("2026-13".parse::<Period>().is_err());
        assert!("Q4".parse::<Period>().is_err());
        assert_eq!(Period::Month(2026, 1).prev_month(), Period::Month(2025, 12));
        assert_eq!(Period::Quarter(2026, 4).to_string(), "2026-Q4");
    }
}
