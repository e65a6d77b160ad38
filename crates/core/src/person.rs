//! Pseudonymous person keys and the resident-ID number check.
//!
//! A person is never named in an envelope, a subject, a log line or an error:
//! events carry a [`PersonKey`], 16 bytes shown as 32 hex digits. Nodes derive
//! it from the resident-ID number with HMAC-SHA-256 under a deployment-wide
//! secret, so the origin and the residence compute the same key for the same
//! person while nobody without the secret can test guesses (ID numbers have
//! too little entropy for a plain hash).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A pseudonymous person key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersonKey([u8; 16]);

impl PersonKey {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// Derives the key of a resident-ID number under the deployment secret.
    /// The number is normalised (trimmed, `x` upper-cased) first.
    pub fn derive(id_number: &str, secret: &[u8]) -> PersonKey {
        let normalized = id_number.trim().to_ascii_uppercase();
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac takes any key length");
        mac.update(b"yipan person key v1\0");
        mac.update(normalized.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&out[..16]);
        PersonKey(key)
    }

    /// The key of a resident-ID number typed by staff: refused when it does not
    /// have the shape of one (the error never repeats the value); a wrong check
    /// digit is reported as [`IdCheck::BadCheckDigit`] for a warning, not refused
    /// (records with one exist and must stay reachable).
    pub fn of_id_number(id_number: &str, secret: &[u8]) -> Result<(PersonKey, IdCheck), String> {
        match check_id_number(id_number.trim()) {
            IdCheck::BadShape => Err("is not 17 digits followed by a digit or X (value not shown)".into()),
            check => Ok((Self::derive(id_number, secret), check)),
        }
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Result<PersonKey, String> {
        let bytes = hex::decode(s).map_err(|_| "is not a 32-hex-digit person key".to_string())?;
        Self::from_slice(&bytes).ok_or_else(|| "is not a 32-hex-digit person key".to_string())
    }

    /// From raw bytes (as stored in index keys).
    pub fn from_slice(b: &[u8]) -> Option<PersonKey> {
        <[u8; 16]>::try_from(b).ok().map(PersonKey)
    }

    /// Raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for PersonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonKey({self})")
    }
}

/// Result of checking an 18-character resident-ID number (GB 11643).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCheck {
    /// Shape and ISO 7064 MOD 11-2 check digit are right.
    Valid,
    /// Not 17 digits followed by a digit or `X`.
    BadShape,
    /// Shape is right but the 18th character is not the check digit. The
    /// national platform accepted such records, so this is a warning only.
    BadCheckDigit,
}

/// Checks a resident-ID number's shape and check digit.
pub fn check_id_number(id: &str) -> IdCheck {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.trim().as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return IdCheck::BadShape;
    }
    let last = b[17].to_ascii_uppercase();
    if !(last.is_ascii_digit() || last == b'X') {
        return IdCheck::BadShape;
    }
    let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    if CHECK[(sum % 11) as usize] == last {
        IdCheck::Valid
    } else {
        IdCheck::BadCheckDigit
    }
}

/// Masks an ID number for display: first 6 and last 4 characters kept.
pub fn mask_id_number(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

/// Masks a name for display: first character kept.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// Masks a phone number: last 4 digits kept.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    let keep = chars.len().min(4);
    format!("{}{}", "*".repeat(chars.len() - keep), chars[chars.len() - keep..].iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_number_typed_by_staff_gives_its_key_and_a_check_digit_warning() {
        let (key, check) = PersonKey::of_id_number(" 11010519491231002x ", b"s").unwrap();
        assert_eq!((key, check), (PersonKey::derive("11010519491231002X", b"s"), IdCheck::Valid));
        // A wrong check digit still reaches the record made with it.
        let (key, check) = PersonKey::of_id_number("110105194912310021", b"s").unwrap();
        assert_eq!((key, check), (PersonKey::derive("110105194912310021", b"s"), IdCheck::BadCheckDigit));
        let e = PersonKey::of_id_number("李秀英", b"s").unwrap_err();
        assert!(e.contains("value not shown") && !e.contains("李"), "{e}");
    }

    #[test]
    fn id_check_digit() {
        // Standard example from GB 11643.
        assert_eq!(check_id_number("11010519491231002X"), IdCheck::Valid);
        assert_eq!(check_id_number("110105194912310021"), IdCheck::BadCheckDigit);
        assert_eq!(check_id_number("11010519491231002"), IdCheck::BadShape);
        assert_eq!(check_id_number("1101051949123100AX"), IdCheck::BadShape);
        assert_eq!(check_id_number("11010519491231002x"), IdCheck::Valid);
    }

    #[test]
    fn derived_keys_are_stable_and_secret_dependent() {
        let a = PersonKey::derive("11010519491231002X", b"secret-a");
        assert_eq!(a, PersonKey::derive(" 11010519491231002x ", b"secret-a"));
        assert_ne!(a, PersonKey::derive("11010519491231002X", b"secret-b"));
        assert_eq!(PersonKey::parse(&a.to_string()).unwrap(), a);
        assert!(PersonKey::parse("xyz").is_err());
    }

    #[test]
    fn masks_hide_the_middle() {
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
        assert_eq!(mask_name("王小红"), "王**");
        assert_eq!(mask_phone("13800001234"), "*******1234");
    }
}

#[cfg(test)]
mod formats_md {
    use super::*;

    /// The test vectors of docs/formats.md ("Person key").
    #[test]
    fn formats_md_test_vectors() {
        let secret = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(PersonKey::derive("11010519491231002X", &secret).to_string(), "ff34231a1c6c7f6bf66c869cda252277");
        assert_eq!(PersonKey::derive(" 11010519491231002x ", &secret).to_string(), "ff34231a1c6c7f6bf66c869cda252277");
        assert_eq!(
            PersonKey::derive("41152219920315002X", b"test-secret").to_string(),
            "4b6228743e2ef724dda727902637cdf3"
        );
        let doc = include_str!("../../../docs/formats.md");
        for v in ["ff34231a1c6c7f6bf66c869cda252277", "4b6228743e2ef724dda727902637cdf3", "yipan person key v1\\0"] {
            assert!(doc.contains(v), "docs/formats.md lost {v}");
        }
    }
}
