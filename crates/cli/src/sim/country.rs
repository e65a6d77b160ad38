//! The simulated country: every county-level locality of the 31 provinces
//! (the division registry's current codes, functional zones left out), and a
//! population of migrants drawn with the 2020 census's flows, each with the
//! events both sides record about them. Deterministic in a seed: every
//! worker process draws the same population and keeps the events its own
//! localities author. No I/O.

use chrono::{DateTime, Duration, Utc};
use yipan_core::{Locality, PersonKey};
use yipan_proto::v1::{self, event_body::Kind, EventBody, EventDraft};

/// 2020 census, per province: residents, people living away from their
/// hukou within the province, residents whose hukou is in another province
/// (`../shared/data/`, from the 7th national census tables).
const CENSUS: &str = include_str!("../../data/census2020_provinces.csv");

/// One province of the simulation.
#[derive(Debug, Clone)]
pub struct Province {
    /// Two-digit code.
    pub code: u8,
    /// Its county-level localities, in code order.
    pub counties: Vec<Locality>,
    /// People living away from their hukou here (both kinds): how often it is a residence.
    pub movers: f64,
    /// Share of those whose hukou is in another province.
    pub from_other: f64,
    /// How often it is the origin of someone living in another province.
    pub origin_weight: f64,
}

/// The provinces and how to draw a person.
#[derive(Debug, Clone)]
pub struct Country {
    /// In code order.
    pub provinces: Vec<Province>,
    residence_cdf: Vec<f64>,
    origin_cdf: Vec<f64>,
}

/// A functional zone listed at county level (development zone, industrial
/// park, …): no county government, so no locality of the simulation.
fn functional_zone(name: &str) -> bool {
    ["开发", "园", "管理", "试验", "实验", "示范", "工业", "合作区", "产业", "保税", "港区"]
        .iter()
        .any(|w| name.contains(w))
}

fn cdf(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out: Vec<f64> = weights
        .map(|w| {
            acc += w.max(0.0);
            acc
        })
        .collect();
    let total = acc.max(f64::MIN_POSITIVE);
    for v in &mut out {
        *v /= total;
    }
    out
}

fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|c| *c < u).min(cdf.len().saturating_sub(1))
}

/// A uniform number in [0, 1) from a seed and a person's draw `k`
/// (SplitMix64: the same on every machine).
pub fn unit(seed: u64, i: u64, k: u64) -> f64 {
    (mix(seed, i, k) >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(seed: u64, i: u64, k: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Country {
    /// Every province with its localities; at most `per_province` of each
    /// province's (evenly spread over its codes) when not 0, for smaller runs.
    pub fn load(per_province: usize) -> Result<Country, String> {
        let counties = yipan_core::division::counties();
        let mut provinces = Vec::new();
        for line in CENSUS.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| -> Result<f64, String> {
                f.get(i)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .ok_or_else(|| format!("census line `{line}`: field {i}"))
            };
            let code: u8 = f[0].parse().map_err(|_| format!("census line `{line}`: province code"))?;
            let (residents, same, other, total) = (num(3)?, num(4)?, num(5)?, num(6)?);
            let _ = same;
            let mut list: Vec<Locality> = counties
                .iter()
                .filter(|(l, name)| l.province() == code && !functional_zone(name))
                .map(|(l, _)| *l)
                .collect();
            if per_province > 0 && list.len() > per_province {
                let step = list.len() as f64 / per_province as f64;
                list = (0..per_province).map(|k| list[(k as f64 * step) as usize]).collect();
            }
            if list.is_empty() {
                return Err(format!("province {code:02} has no county-level locality in the registry"));
            }
            provinces.push(Province {
                code,
                counties: list,
                movers: total,
                from_other: if total > 0.0 { other / total } else { 0.0 },
                // Provinces that draw many from elsewhere send few: residents
                // less twice the inflow (Henan, Anhui, Sichuan lead, as the
                // census communiqué says; Guangdong, Shanghai, Beijing trail).
                origin_weight: (residents - 2.0 * other).max(residents * 0.02),
            });
        }
        provinces.sort_by_key(|p| p.code);
        let residence_cdf = cdf(provinces.iter().map(|p| p.movers));
        let origin_cdf = cdf(provinces.iter().map(|p| p.origin_weight));
        Ok(Country { provinces, residence_cdf, origin_cdf })
    }

    /// Every locality, in code order.
    pub fn localities(&self) -> Vec<Locality> {
        self.provinces.iter().flat_map(|p| p.counties.iter().copied()).collect()
    }

    /// Person `i`'s origin and residence (different counties).
    pub fn draw(&self, seed: u64, i: u64) -> (Locality, Locality) {
        let rp = pick(&self.residence_cdf, unit(seed, i, 0));
        let residence_p = &self.provinces[rp];
        let origin_p = if unit(seed, i, 1) < residence_p.from_other {
            let mut k = 2;
            loop {
                let o = pick(&self.origin_cdf, unit(seed, i, k));
                if o != rp || k > 40 {
                    break &self.provinces[if o != rp { o } else { (rp + 1) % self.provinces.len() }];
                }
                k += 1;
            }
        } else {
            residence_p
        };
        let county = |p: &Province, k: u64| p.counties[(unit(seed, i, k) * p.counties.len() as f64) as usize];
        let residence = county(residence_p, 50);
        let mut origin = county(origin_p, 51);
        if origin == residence {
            if origin_p.counties.len() > 1 {
                let at = origin_p.counties.iter().position(|c| *c == origin).unwrap_or(0);
                origin = origin_p.counties[(at + 1) % origin_p.counties.len()];
            } else {
                // A province of one locality (a small run): the origin is next door.
                origin = county(&self.provinces[(rp + 1) % self.provinces.len()], 52);
            }
        }
        (origin, residence)
    }
}

/// A synthetic resident-ID number of person `i` registered at `origin`
/// (unique per `i` below 12 million; correct check digit).
pub fn id_number(origin: Locality, i: u64) -> String {
    let birth =
        chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default() + chrono::Days::new((i / 1000) % 12_000);
    let first17 = format!("{origin}{}{:03}", birth.format("%Y%m%d"), i % 1000);
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{first17}{check}")
}

/// A deterministic UUIDv7 for event `k` of person `i`, at `at`.
fn event_id(seed: u64, i: u64, k: u64, at: DateTime<Utc>) -> Vec<u8> {
    let r = mix(seed ^ 0x5151, i, k).to_le_bytes();
    let s = mix(seed ^ 0xA5A5, i, k).to_le_bytes();
    let random = [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], s[0], s[1]];
    uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis().max(0) as u64, &random)
        .into_uuid()
        .as_bytes()
        .to_vec()
}

/// A person's events, each with the locality that writes it, in the order they happen.
pub struct Person {
    /// The events.
    pub events: Vec<(Locality, EventDraft)>,
}

/// Person `i`'s events (about five on average, every duty of both lists and
/// both exchanges among them), the first recorded `days_ago` days before
/// `now`. A share `tiers` of arrivals carries the identity tier.
pub fn person(country: &Country, seed: u64, i: u64, now: DateTime<Utc>, secret: &[u8], tiers: f64) -> Person {
    let (origin, residence) = country.draw(seed, i);
    let id = id_number(origin, i);
    let key = PersonKey::derive(&id, secret).to_string();
    let start = now - Duration::days(20 + (unit(seed, i, 60) * 300.0) as i64) - Duration::minutes((i % 600) as i64);
    let mut events = Vec::with_capacity(8);
    let mut at = start;
    let mut push = |events: &mut Vec<(Locality, EventDraft)>,
                    author: Locality,
                    kind: Kind,
                    cause: Option<&[u8]>,
                    identity: bool| {
        at += Duration::hours(6);
        let k = events.len() as u64;
        let draft = EventDraft {
            event_id: event_id(seed, i, k, at),
            occurred_at: Some(yipan_core::time::to_ts(at)),
            person_key: key.clone(),
            origin: origin.to_string(),
            residence: residence.to_string(),
            causation_id: cause.map(<[u8]>::to_vec).unwrap_or_default(),
            body: Some(EventBody { kind: Some(kind) }),
            identity: identity.then(|| v1::IdentityTier { id_number: id.clone(), ..Default::default() }),
            ..Default::default()
        };
        let id = draft.event_id.clone();
        events.push((author, draft));
        id
    };
    let tiered = unit(seed, i, 61) < tiers;
    push(
        &mut events,
        residence,
        Kind::ArrivalRegistered(v1::ArrivalRegistered {
            channel: v1::RegistrationChannel::Employer as i32,
            ..Default::default()
        }),
        None,
        tiered,
    );
    let certificate = format!("C-{origin}-{i}");
    push(
        &mut events,
        origin,
        Kind::CertificateIssued(v1::CertificateIssued { certificate_ref: certificate.clone(), valid_until: None }),
        None,
        false,
    );
    push(
        &mut events,
        residence,
        Kind::CertificateVerified(v1::CertificateVerified { certificate_ref: certificate, marital_status: 0 }),
        None,
        false,
    );
    push(
        &mut events,
        residence,
        Kind::ServiceRendered(v1::ServiceRendered {
            service: [v1::ServiceKind::PersonInformed, v1::ServiceKind::Contraceptives, v1::ServiceKind::CareVisit]
                [(i % 3) as usize] as i32,
            provider_ref: String::new(),
        }),
        None,
        false,
    );
    match i % 10 {
        0 => {
            let request = push(
                &mut events,
                residence,
                Kind::CaseAssistRequested(v1::CaseAssistRequested {
                    urgency: v1::Urgency::Normal as i32,
                    subject: "confirm marital status at origin".into(),
                }),
                None,
                false,
            );
            push(
                &mut events,
                origin,
                Kind::CaseAssistAnswered(v1::CaseAssistAnswered {
                    result: v1::VerificationResult::Confirmed as i32,
                    remarks: String::new(),
                }),
                Some(&request),
                false,
            );
        }
        1 => {
            let sent = push(
                &mut events,
                residence,
                Kind::NotificationSent(v1::NotificationSent {
                    topic: v1::NotificationTopic::Registration as i32,
                    about_events: Vec::new(),
                }),
                None,
                false,
            );
            push(&mut events, origin, Kind::NotificationReceived(v1::NotificationReceived {}), Some(&sent), false);
        }
        2..=5 => {
            push(
                &mut events,
                residence,
                Kind::AgreementSigned(v1::AgreementSigned {
                    agreement: v1::AgreementKind::ServiceAgreement as i32,
                    agreement_ref: String::new(),
                }),
                None,
                false,
            );
        }
        6 => {
            let filed = push(
                &mut events,
                residence,
                Kind::ComplaintFiled(v1::ComplaintFiled { category: "waiting time".into() }),
                None,
                false,
            );
            push(
                &mut events,
                residence,
                Kind::ComplaintResolved(v1::ComplaintResolved { outcome: "resolved".into() }),
                Some(&filed),
                false,
            );
        }
        7 => {
            push(
                &mut events,
                origin,
                Kind::ContraceptionStatusRecorded(v1::ContraceptionStatusRecorded {}),
                None,
                false,
            );
        }
        _ => {}
    }
    if i % 20 == 9 {
        push(
            &mut events,
            residence,
            Kind::DepartureRegistered(v1::DepartureRegistered { destination: String::new() }),
            None,
            false,
        );
    }
    Person { events }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_country_has_every_province_and_its_real_counties() {
        let c = Country::load(0).unwrap();
        assert_eq!(c.provinces.len(), 31);
        let n = c.localities().len();
        // 2,844 county-level units at the end of 2020; the registry's 2023 codes differ by a few.
        assert!((2_800..2_900).contains(&n), "{n} localities");
        assert!(c.localities().contains(&Locality::parse("610112").unwrap()));
        assert!(c.localities().contains(&Locality::parse("441900").unwrap()), "东莞 is a locality");
        let small = Country::load(3).unwrap();
        assert_eq!(small.localities().len(), 31 * 3, "three of each province");
        let one = Country::load(1).unwrap();
        for i in 0..2_000 {
            let (o, r) = one.draw(9, i);
            assert_ne!(o, r, "person {i}: origin and residence differ even with one locality per province");
        }
    }

    #[test]
    fn draws_follow_the_census() {
        let c = Country::load(0).unwrap();
        let n = 200_000u64;
        let (mut other, mut guangdong, mut henan_origin) = (0u64, 0u64, 0u64);
        for i in 0..n {
            let (o, r) = c.draw(7, i);
            assert_ne!(o, r);
            if o.province() != r.province() {
                other += 1;
                if o.province() == 41 {
                    henan_origin += 1;
                }
            }
            if r.province() == 44 {
                guangdong += 1;
            }
        }
        // 124.8 M of 492.8 M people away from their hukou live in another province (~25%).
        let share = other as f64 / n as f64;
        assert!((0.20..0.32).contains(&share), "{share}");
        // Guangdong hosts the most: 29.6 M + its own movers, ~11% of all.
        assert!(guangdong as f64 / n as f64 > 0.08, "{guangdong}");
        assert!(henan_origin as f64 / other as f64 > 0.05, "{henan_origin} of {other}");
        // The same seed draws the same country.
        assert_eq!(c.draw(7, 12_345), c.draw(7, 12_345));
    }

    #[test]
    fn every_drawn_event_is_accepted_by_the_log_that_writes_it() {
        let c = Country::load(2).unwrap();
        let now = chrono::Utc::now();
        let mut logs: HashMap<Locality, yipan_log::MemStore> = HashMap::new();
        let mut kinds = std::collections::BTreeSet::new();
        let mut n = 0;
        for i in 0..400 {
            for (author, draft) in person(&c, 3, i, now, b"s", 0.5).events {
                let log = logs.entry(author).or_insert_with(|| {
                    let key = ed25519_dalek::SigningKey::from_bytes(&[author.as_u32() as u8; 32]);
                    yipan_log::MemStore::open(yipan_log::MemBackend::new(), author, key).unwrap()
                });
                kinds.insert(format!(
                    "{:?}",
                    draft.body.as_ref().and_then(|b| b.kind.as_ref()).map(yipan_core::EventKind::of)
                ));
                log.append_batch(vec![draft]).unwrap_or_else(|e| panic!("person {i} at {author}: {e}"));
                n += 1;
            }
        }
        // About five events a person, thirteen kinds of both duty lists and both exchanges.
        assert!((1_900..2_100).contains(&n), "{n} events");
        assert_eq!(kinds.len(), 13, "{kinds:?}");
    }

    #[test]
    fn synthetic_id_numbers_are_valid_and_distinct() {
        let l = Locality::parse("411522").unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..5_000 {
            let id = id_number(l, i);
            assert_eq!(yipan_core::person::check_id_number(&id), yipan_core::person::IdCheck::Valid, "{id}");
            assert!(seen.insert(id));
        }
    }
}
