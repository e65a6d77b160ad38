//! `Catalogue::from_json`: a duty catalogue document, as published by any
//! locality in a `DutyCatalogPublished` event and applied by every node's
//! projections.
//!
//! Checks: an accepted catalogue passes `check`, names only known kinds,
//! serialises and parses back equal; every item's due date and every
//! exchange deadline can be computed (quickly: the run's `-timeout` catches
//! a hang) and falls on or after the anchor.
#![no_main]

use chrono::{Days, NaiveDate};
use libfuzzer_sys::fuzz_target;
use yipan_projections::{Catalogue, WorkCalendar};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(c) = Catalogue::from_json(text) else { return };
    c.check().expect("an accepted catalogue checks");
    let back = Catalogue::from_json(&serde_json::to_string(&c).expect("serialises")).expect("re-parses");
    assert_eq!(back, c);
    let anchor = NaiveDate::from_ymd_opt(2026, 10, 1).expect("date");
    let calendar = WorkCalendar::default();
    for item in &c.items {
        assert!(!item.fulfilled_by.is_empty());
        for f in &item.fulfilled_by {
            assert!(yipan_core::EventKind::parse(&f.kind).is_some());
        }
        assert!(item.due.due_date(anchor, &calendar) >= anchor);
    }
    let r = c.exchanges;
    for d in [r.receipt_days, r.case_assist_urgent_days, r.case_assist_normal_days, r.mismatch_reissue_days] {
        assert!(anchor.checked_add_days(Days::new(d.into())).unwrap_or(anchor) >= anchor);
    }
    assert!(calendar.add_working_days(anchor, r.first_child_answer_working_days) >= anchor);
});
