//! Reporting periods (CST calendar): a month `2026-10`, a quarter `2026-Q4`, a year `2026`.
//!
//! A statistics month closes on a configured day (DOMAIN.md "monthly cycle":
//! the 20th): with the 20th, `2026-10` runs from 21 September to 20 October,
//! `2026-Q4` from 21 September to 20 December and `2026` from 21 December
//! 2025 to 20 December 2026. [`CALENDAR_MONTH`] (31) makes periods calendar
//! months. The close day comes from the assessed locality's catalogue
//! (`statistics.month_closes_on_day`), so both sides of a relationship count
//! the same days.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate};
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

/// The close day that makes periods calendar months (months end on their last day).
pub const CALENDAR_MONTH: u32 = 31;

/// Whether `day` is a valid statistics close day: 1–28 (every month has it) or
/// [`CALENDAR_MONTH`].
pub fn valid_close_day(day: u32) -> bool {
    (1..=28).contains(&day) || day == CALENDAR_MONTH
}

impl Period {
    /// The calendar month containing a date.
    pub fn month_of(d: NaiveDate) -> Period {
        Period::Month(d.year(), d.month())
    }

    /// The statistics month containing a date when months close on day
    /// `close` (a day after the close belongs to the next month).
    pub fn month_of_at(d: NaiveDate, close: u32) -> Period {
        if close >= CALENDAR_MONTH || d.day() <= close {
            Period::month_of(d)
        } else if d.month() == 12 {
            Period::Month(d.year() + 1, 1)
        } else {
            Period::Month(d.year(), d.month() + 1)
        }
    }

    /// Whether a date falls in the calendar period.
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.contains_at(d, CALENDAR_MONTH)
    }

    /// Whether a date falls in the period when months close on day `close`.
    pub fn contains_at(&self, d: NaiveDate, close: u32) -> bool {
        let Period::Month(y, m) = Period::month_of_at(d, close) else { return false };
        match *self {
            Period::Month(py, pm) => (y, m) == (py, pm),
            Period::Quarter(py, q) => y == py && (m - 1) / 3 + 1 == q,
            Period::Year(py) => y == py,
        }
    }

    /// The first and last day of the period when months close on day `close`.
    pub fn bounds_at(&self, close: u32) -> (NaiveDate, NaiveDate) {
        let (first, last) = match *self {
            Period::Month(y, m) => ((y, m), (y, m)),
            Period::Quarter(y, q) => ((y, 3 * q - 2), (y, 3 * q)),
            Period::Year(y) => ((y, 1), (y, 12)),
        };
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN);
        if close >= CALENDAR_MONTH {
            let (ly, lm) = if last.1 == 12 { (last.0 + 1, 1) } else { (last.0, last.1 + 1) };
            let end = ymd(ly, lm, 1).checked_sub_days(Days::new(1)).unwrap_or(NaiveDate::MIN);
            (ymd(first.0, first.1, 1), end)
        } else {
            let (py, pm) = if first.1 == 1 { (first.0 - 1, 12) } else { (first.0, first.1 - 1) };
            // The day after the previous month's close (28 February + 1 is 1 March, not 29 February).
            let start = ymd(py, pm, close).succ_opt().unwrap_or(NaiveDate::MIN);
            (start, ymd(last.0, last.1, close))
        }
    }

    /// The period of the same length before this one (month → month, quarter → quarter, year → year).
    pub fn prev(&self) -> Period {
        match *self {
            Period::Month(..) => self.prev_month(),
            Period::Quarter(y, 1) => Period::Quarter(y - 1, 4),
            Period::Quarter(y, q) => Period::Quarter(y, q - 1),
            Period::Year(y) => Period::Year(y - 1),
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

    #[test]
    fn statistics_months_close_on_the_20th() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(Period::month_of_at(d("2026-10-20"), 20), Period::Month(2026, 10));
        assert_eq!(Period::month_of_at(d("2026-10-21"), 20), Period::Month(2026, 11));
        assert_eq!(Period::month_of_at(d("2026-12-21"), 20), Period::Month(2027, 1));
        assert_eq!(Period::month_of_at(d("2026-10-31"), CALENDAR_MONTH), Period::Month(2026, 10));
        let oct = Period::Month(2026, 10);
        assert!(oct.contains_at(d("2026-09-21"), 20));
        assert!(!oct.contains_at(d("2026-09-20"), 20));
        assert!(!oct.contains_at(d("2026-10-21"), 20));
        assert!(oct.contains(d("2026-10-31")));
        // Q4 and the year follow their statistics months.
        assert!(Period::Quarter(2026, 4).contains_at(d("2026-09-25"), 20));
        assert!(!Period::Quarter(2026, 4).contains_at(d("2026-12-25"), 20));
        assert!(Period::Year(2027).contains_at(d("2026-12-25"), 20));
        assert_eq!(oct.bounds_at(20), (d("2026-09-21"), d("2026-10-20")));
        assert_eq!(Period::Month(2026, 1).bounds_at(20), (d("2025-12-21"), d("2026-01-20")));
        assert_eq!(Period::Quarter(2026, 4).bounds_at(20), (d("2026-09-21"), d("2026-12-20")));
        assert_eq!(Period::Year(2026).bounds_at(20), (d("2025-12-21"), d("2026-12-20")));
        assert_eq!(Period::Month(2026, 2).bounds_at(CALENDAR_MONTH), (d("2026-02-01"), d("2026-02-28")));
        assert_eq!(Period::Year(2026).bounds_at(CALENDAR_MONTH), (d("2026-01-01"), d("2026-12-31")));
        // For every close day, every day of a leap and a common year is in exactly one
        // statistics month, whose bounds hold it and agree with its neighbours.
        for close in (1..=28).chain([CALENDAR_MONTH]) {
            let mut day = d("2023-12-01");
            while day <= d("2025-01-31") {
                let m = Period::month_of_at(day, close);
                let (a, b) = m.bounds_at(close);
                assert!(a <= day && day <= b, "{day} close {close}: {m} is {a}..{b}");
                assert!(m.contains_at(day, close) && !m.prev().contains_at(day, close), "{day} close {close}");
                assert_eq!(m.prev().bounds_at(close).1.succ_opt().unwrap(), a, "{m} close {close}");
                day = day.succ_opt().unwrap();
            }
        }
        assert_eq!(Period::Month(2027, 3).bounds_at(28), (d("2027-03-01"), d("2027-03-28")));
        assert_eq!(Period::Month(2024, 3).bounds_at(28), (d("2024-02-29"), d("2024-03-28")));
        assert!(valid_close_day(20) && valid_close_day(31) && !valid_close_day(29) && !valid_close_day(0));
        assert_eq!(Period::Quarter(2026, 1).prev(), Period::Quarter(2025, 4));
    }
}
