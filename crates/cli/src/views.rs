//! `yipan card | scorecard | cases | flows`: the projections, rebuilt from a
//! data directory's log (the same answers a running node gives).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use yipan_core::{Locality, PersonKey};
use yipan_node::datadir;
use yipan_node::views as v;
use yipan_projections::state::{ExchangeState, ItemState};
use yipan_projections::Projections;

fn open(dir: &Path, calendar: Option<&Path>) -> Result<(Locality, Projections)> {
    let d = datadir::open(dir)?;
    let p = v::build(&d.log, v::load_calendar(calendar)?)?;
    Ok((d.locality, p))
}

/// A CST date, marked when late.
/// A code with its registry name: `610112 未央区`.
fn named(l: yipan_core::Locality) -> String {
    match yipan_core::division::name(l) {
        Some(n) => format!("{l} {n}"),
        None => l.to_string(),
    }
}

fn when(at: chrono::DateTime<chrono::Utc>, on_time: bool) -> String {
    format!("{}{}", yipan_projections::calendar::date_of(at), if on_time { "" } else { " (late)" })
}

fn print_json(v: &impl serde::Serialize) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "-".into())
}

/// `yipan card PERSON`.
pub fn card(dir: &Path, calendar: Option<&Path>, person: &str, as_of: Option<&str>, json: bool) -> Result<ExitCode> {
    let person = PersonKey::parse(person).map_err(|e| anyhow!("person: {e}"))?;
    let as_of = v::parse_as_of(as_of).map_err(anyhow::Error::msg)?;
    let (_, p) = open(dir, calendar)?;
    let cards: Vec<_> = p.relationships_of_person(&person).iter().map(|r| p.card(r, as_of)).collect();
    if cards.is_empty() {
        eprintln!("no events about person {person} in this log");
        return Ok(ExitCode::from(1));
    }
    if json {
        return print_json(&cards);
    }
    for c in cards {
        println!(
            "person {}  origin {} → residence {}  anchor {}  as of {}  (catalogues: origin {}, residence {})",
            c.rel.person,
            named(c.rel.origin),
            named(c.rel.residence),
            c.anchor.map(|a| yipan_projections::calendar::date_of(a).to_string()).unwrap_or_else(|| "-".into()),
            yipan_projections::calendar::date_of(c.as_of),
            c.catalogue_origin,
            c.catalogue_residence
        );
        for i in &c.items {
            let state = match &i.state {
                ItemState::Done { at, on_time, .. } => {
                    format!("done {}", when(*at, *on_time))
                }
                ItemState::Pending => "pending".into(),
                ItemState::Overdue { days } => format!("OVERDUE {days} d"),
            };
            let side = match i.side {
                yipan_projections::Side::Origin => "户籍地 origin",
                yipan_projections::Side::Residence => "现居住地 residence",
            };
            println!("  {side:<20} {:<16} {:<44} due {}  {state}", i.name_zh, i.name_en, i.due);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `yipan scorecard`.
#[allow(clippy::too_many_arguments)]
pub fn scorecard(
    dir: &Path,
    calendar: Option<&Path>,
    locality: Option<&str>,
    pair: Option<&str>,
    direction: Option<&str>,
    period: Option<&str>,
    as_of: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let (me, p) = open(dir, calendar)?;
    let scope = v::parse_scope(locality, pair, direction, me).map_err(anyhow::Error::msg)?;
    let period = v::parse_period(period, p.closes_on(me, chrono::Utc::now())).map_err(anyhow::Error::msg)?;
    let as_of = v::parse_as_of(as_of).map_err(anyhow::Error::msg)?;
    let card = p.scorecard(scope, period, as_of);
    if json {
        return print_json(&card);
    }
    println!(
        "scorecard {} for {period}, as of {}",
        serde_json::to_string(&scope)?,
        yipan_projections::calendar::date_of(as_of)
    );
    for i in &card.indicators {
        let target = if i.comparison == "at_most" {
            format!("≤ {}", i.target)
        } else {
            format!("≥ {:.0}%", i.target * 100.0)
        };
        let value = if i.comparison == "at_most" {
            i.value.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
        } else {
            pct(i.value)
        };
        let pass = match i.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "no data",
        };
        println!(
            "  {:<24} {:<32} {:>6}/{:<6} {:>7}  target {:<7} {pass}",
            i.name_zh, i.name_en, i.numerator, i.denominator, value, target
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `yipan cases`.
pub fn cases(
    dir: &Path,
    calendar: Option<&Path>,
    locality: Option<&str>,
    overdue: bool,
    as_of: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let (_, p) = open(dir, calendar)?;
    let (as_of, locality) = v::parse_as_of_and_locality(as_of, locality).map_err(anyhow::Error::msg)?;
    let mut ex = p.all_exchanges(locality, as_of);
    if overdue {
        ex.retain(|e| e.overdue());
    }
    if json {
        return print_json(&ex);
    }
    println!("{} exchanges as of {}", ex.len(), yipan_projections::calendar::date_of(as_of));
    for e in &ex {
        let state = match &e.state {
            ExchangeState::Closed { at, on_time, .. } => {
                format!("answered {}", when(*at, *on_time))
            }
            ExchangeState::Open => "open".into(),
            ExchangeState::Overdue { days } => format!("OVERDUE {days} d"),
        };
        let urgent = if e.urgent { " urgent" } else { "" };
        let leg = e
            .request_leg
            .map(|l| {
                let late = if l.on_time { "on time" } else { "LATE" };
                format!("  (applied {}, asked after {} working days, due {}: {late})", l.applied, l.working_days, l.due)
            })
            .unwrap_or_default();
        println!(
            "  {:<18} {:?}{urgent:<7} {} → {}  person {}  opened {}  due {}  {state}{leg}",
            e.kind.zh(),
            e.kind,
            named(e.from),
            named(e.to),
            &e.rel.person.to_string()[..8],
            yipan_projections::calendar::date_of(e.opened),
            e.due
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `yipan flows`.
pub fn flows(
    dir: &Path,
    calendar: Option<&Path>,
    locality: Option<&str>,
    as_of: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let (_, p) = open(dir, calendar)?;
    let (as_of, locality) = v::parse_as_of_and_locality(as_of, locality).map_err(anyhow::Error::msg)?;
    let f = p.flows(locality, as_of);
    if json {
        return print_json(&f);
    }
    println!("{:<8} {:<20} {:<20} {:>8} {:>10}", "month", "residence", "origin", "arrivals", "departures");
    for r in &f.rows {
        println!(
            "{:<8} {:<20} {:<20} {:>8} {:>10}",
            r.period.to_string(),
            named(r.residence),
            named(r.origin),
            r.arrivals,
            r.departures
        );
    }
    println!("early warnings ({}):", f.rule);
    for w in &f.warnings {
        let origin = w.origin.map(named).unwrap_or_else(|| "all origins".into());
        println!(
            "  {} {} from {origin}: {} arrivals vs baseline {:.1} ({})",
            w.period,
            named(w.residence),
            w.arrivals,
            w.baseline,
            w.direction
        );
    }
    Ok(ExitCode::SUCCESS)
}
