//! Yipan's derived views, sans-IO and deterministic (DESIGN.md invariant 7):
//! fed events, they answer queries `as_of` an instant, and the same *set* of
//! events (per-author order kept) gives the same answers and digests on every
//! node.
//!
//! - [`calendar`]: working days (weekends, holidays, make-up days), CST dates.
//! - [`catalogue`]: the duty catalogue as versioned data (four-one, six-one, exchange deadlines).
//! - [`fact`]: what the views keep of an event (never a personal value).
//! - [`period`]: months, quarters, years.
//! - [`state`]: [`Projections`]: apply events; responsibility cards, exchanges, digests.
//! - [`scorecard`]: the DOMAIN.md indicators per locality, pair, direction, period.
//! - [`flow`]: arrivals and departures per period with early warning.

pub mod calendar;
pub mod catalogue;
pub mod fact;
pub mod flow;
pub mod locality;
pub mod period;
pub mod quality;
pub mod scorecard;
pub mod state;

pub use calendar::WorkCalendar;
pub use catalogue::{Catalogue, Side};
pub use fact::{Fact, Rel};
pub use period::Period;
pub use state::{Card, Exchange, ExchangeKind, Projections};
