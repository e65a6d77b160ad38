//! The working-day calendar: weekends, a holiday list and make-up working
//! days (调休), for deadlines given in working days. Dates are China
//! Standard Time (UTC+8) calendar dates.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// China Standard Time, the zone of every date and period boundary.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

/// The CST calendar date of an instant.
pub fn date_of(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&cst()).date_naive()
}

/// Working days: Monday to Friday, minus holidays, plus make-up working days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkCalendar {
    /// Days off that would otherwise be working days.
    #[serde(default)]
    pub holidays: BTreeSet<NaiveDate>,
    /// Weekend days that are working days (调休).
    #[serde(default)]
    pub workdays: BTreeSet<NaiveDate>,
}

impl WorkCalendar {
    /// Parses `{"holidays": ["2026-10-01", …], "workdays": ["2026-09-27", …]}`.
    pub fn from_json(text: &str) -> Result<WorkCalendar, String> {
        serde_json::from_str(text).map_err(|e| format!("calendar: {e}"))
    }

    /// Whether `d` is a working day.
    pub fn is_working(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The `n`th working day after `d` (`n` = 0 gives `d`), or the last
    /// representable date if the calendar ends first. Takes O(`n`) steps:
    /// catalogues bound their working days ([`crate::catalogue::MAX_DUE_DAYS`]).
    pub fn add_working_days(&self, d: NaiveDate, n: u32) -> NaiveDate {
        let mut day = d;
        let mut left = n;
        while left > 0 {
            let Some(next) = day.checked_add_days(Days::new(1)) else { break };
            day = next;
            if self.is_working(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days from `from` to `to`: positive when `to` is later (the
    /// working days after `from` up to and including `to`), negative when it
    /// is earlier (minus the working days after `to` up to and including
    /// `from`), 0 on the same day. Spans are capped at ten years.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        let (a, b, sign) = if to >= from { (from, to, 1) } else { (to, from, -1) };
        let mut n = 0i64;
        let mut day = a;
        for _ in 0..3660 {
            if day >= b {
                break;
            }
            let Some(next) = day.checked_add_days(Days::new(1)) else { break };
            day = next;
            if self.is_working(day) {
                n += 1;
            }
        }
        sign * n
    }
}

/// The end (23:59:59.999 CST) of a date, as an instant: deadlines fall due at the end of their day.
pub fn end_of(d: NaiveDate) -> DateTime<Utc> {
    let t = d.and_hms_milli_opt(23, 59, 59, 999).unwrap_or_default();
    t.and_local_timezone(cst()).single().map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn weekends_holidays_and_makeup_days() {
        let cal = WorkCalendar::from_json(
            r#"{"holidays":["2026-10-01","2026-10-02","2026-10-05"],"workdays":["2026-10-10"]}"#,
        )
        .unwrap();
        assert!(!cal.is_working(d("2026-10-03"))); // Saturday
        assert!(!cal.is_working(d("2026-10-01"))); // holiday (Thursday)
        assert!(cal.is_working(d("2026-10-10"))); // make-up Saturday
                                                  // From Wednesday 30 Sep: 1 Oct, 2 Oct off, 3–4 weekend, 5 off → 6, 7, 8, 9, 10 (make-up).
        assert_eq!(cal.add_working_days(d("2026-09-30"), 5), d("2026-10-10"));
        assert_eq!(WorkCalendar::default().add_working_days(d("2026-10-16"), 5), d("2026-10-23"));
        assert_eq!(cal.add_working_days(d("2026-10-16"), 0), d("2026-10-16"));
        assert!(WorkCalendar::from_json(r#"{"holiday":[]}"#).is_err());
        // The inverse of add_working_days, in both directions.
        assert_eq!(cal.working_days_between(d("2026-09-30"), d("2026-10-10")), 5);
        assert_eq!(cal.working_days_between(d("2026-10-10"), d("2026-09-30")), -5);
        assert_eq!(WorkCalendar::default().working_days_between(d("2026-10-16"), d("2026-10-23")), 5);
        assert_eq!(WorkCalendar::default().working_days_between(d("2026-10-16"), d("2026-10-16")), 0);
    }
}
