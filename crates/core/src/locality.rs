//! GB/T 2260 administrative division codes, the identity of a locality node.
//!
//! A node is a county-level unit (six digits, e.g. `610112`, a Xi'an district)
//! or, where a county delegates, a township (nine digits). Codes are checked
//! for shape and for a real province prefix; a code ending in `00` names a
//! province or prefecture, not a county-level unit, and is refused.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The 31 provincial-level divisions (2020), by two-digit code.
pub const PROVINCES: &[(u8, &str)] = &[
    (11, "Beijing"),
    (12, "Tianjin"),
    (13, "Hebei"),
    (14, "Shanxi"),
    (15, "Inner Mongolia"),
    (21, "Liaoning"),
    (22, "Jilin"),
    (23, "Heilongjiang"),
    (31, "Shanghai"),
    (32, "Jiangsu"),
    (33, "Zhejiang"),
    (34, "Anhui"),
    (35, "Fujian"),
    (36, "Jiangxi"),
    (37, "Shandong"),
    (41, "Henan"),
    (42, "Hubei"),
    (43, "Hunan"),
    (44, "Guangdong"),
    (45, "Guangxi"),
    (46, "Hainan"),
    (50, "Chongqing"),
    (51, "Sichuan"),
    (52, "Guizhou"),
    (53, "Yunnan"),
    (54, "Tibet (Xizang)"),
    (61, "Shaanxi"),
    (62, "Gansu"),
    (63, "Qinghai"),
    (64, "Ningxia"),
    (65, "Xinjiang"),
];

/// A validated county-level (6-digit) or township (9-digit) division code.
///
/// Stored as its number: codes never start with `0`, so the number is unique
/// and sorts like the text. Keys in the log use [`Locality::as_u32`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality(u32);

/// Prefecture-level cities without counties (东莞, 中山, 儋州): their own
/// codes are county-level units, their townships' codes start with them.
pub const COUNTY_LEVEL_CITIES: [&str; 3] = ["441900", "442000", "460400"];

impl Locality {
    /// Parses and checks a code; the error says what is wrong with it.
    pub fn parse(code: &str) -> Result<Self, String> {
        if code.is_empty() {
            return Err("is empty; expected a 6-digit division code such as `610112`".into());
        }
        if !code.bytes().all(|b| b.is_ascii_digit()) || !(code.len() == 6 || code.len() == 9) {
            return Err(format!(
                "`{}` is not a 6-digit (county) or 9-digit (township) division code",
                crate::clip(code)
            ));
        }
        let province: u8 = code[..2].parse().map_err(|_| format!("`{}` has no province", crate::clip(code)))?;
        if province_name(province).is_none() {
            return Err(format!("`{}` starts with `{province:02}`, which is no province code", crate::clip(code)));
        }
        // A code ending in `00` names a province or prefecture, except the
        // prefecture-level cities without counties that are county-level
        // units themselves. A fixed list, not the registry: whether a stored
        // or received code parses must never depend on the registry's version.
        if &code[4..6] == "00" && !COUNTY_LEVEL_CITIES.contains(&&code[..6]) {
            return Err(format!("`{}` names a province or prefecture, not a county-level unit", crate::clip(code)));
        }
        if code.len() == 9 && &code[6..9] == "000" {
            return Err(format!("`{}` has township part `000`", crate::clip(code)));
        }
        let n: u32 = code.parse().map_err(|_| format!("`{}` is not a number", crate::clip(code)))?;
        Ok(Locality(n))
    }

    /// Parses a code for a named field: errors read "field `origin`: …".
    pub fn parse_field(field: &str, code: &str) -> Result<Self, Error> {
        Self::parse(code).map_err(|p| Error::field(field, p))
    }

    /// The numeric form used in storage keys.
    pub fn as_u32(self) -> u32 {
        self.0
    }

    /// Rebuilds a locality from its numeric form (as read back from a key).
    pub fn from_u32(n: u32) -> Result<Self, String> {
        Self::parse(&n.to_string())
    }

    /// The two-digit province code, the sharding token of NATS subjects.
    pub fn province(self) -> u8 {
        let digits = if self.0 >= 100_000_000 { 7 } else { 4 };
        (self.0 / 10u32.pow(digits)) as u8
    }

    /// The county-level unit this locality belongs to (itself if 6 digits).
    pub fn county(self) -> Locality {
        if self.0 >= 100_000_000 {
            Locality(self.0 / 1000)
        } else {
            self
        }
    }
}

/// English name of a province code, if it is one.
pub fn province_name(code: u8) -> Option<&'static str> {
    PROVINCES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment in tables.
        f.pad(&self.0.to_string())
    }
}

impl fmt::Debug for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Locality({})", self.0)
    }
}

impl FromStr for Locality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Locality::parse(s)
    }
}

impl serde::Serialize for Locality {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Locality {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Locality::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_codes() {
        for code in ["610112", "610113", "411522", "440305", "110101", "610112001"] {
            let l = Locality::parse(code).unwrap();
            assert_eq!(l.to_string(), code);
        }
        assert_eq!(Locality::parse("610112").unwrap().province(), 61);
        assert_eq!(Locality::parse("411522").unwrap().province(), 41);
        assert_eq!(Locality::parse("610112001").unwrap().province(), 61);
        assert_eq!(Locality::parse("610112001").unwrap().county().to_string(), "610112");
    }

    #[test]
    fn rejects_bad_codes_with_reason() {
        let cases = [
            ("", "is empty"),
            ("61011", "not a 6-digit"),
            ("6101120", "not a 6-digit"),
            ("61011a", "not a 6-digit"),
            ("991234", "no province code"),
            ("610100", "prefecture"),
            ("610000", "prefecture"),
            ("610112000", "township part"),
            ("441800", "prefecture"),
        ];
        for (code, want) in cases {
            let err = Locality::parse(code).unwrap_err();
            assert!(err.contains(want), "{code}: {err}");
        }
    }

    #[test]
    fn cities_without_counties_are_county_level_units() {
        for code in ["441900", "442000", "460400", "441900003"] {
            let l = Locality::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(l.county().to_string(), &code[..6]);
        }
    }

    #[test]
    fn numeric_round_trip_and_order() {
        let a = Locality::parse("411522").unwrap();
        let b = Locality::parse("610112").unwrap();
        assert!(a < b);
        assert_eq!(Locality::from_u32(b.as_u32()).unwrap(), b);
    }
}
