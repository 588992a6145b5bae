//! DICOM unique identifiers: the PS3.5 §9.1 grammar, checked before any UID
//! is trusted, compared, or used as part of a file-system path.
//!
//! This module never allocates a path itself; it only decides whether a
//! string may become one. Every caller that builds a path from a UID must go
//! through [`Uid::parse`] first, so that `..`, `/`, or an over-long value can
//! never reach the storage layer.

use std::fmt;

/// The longest UID the standard allows, in characters, after trailing NUL
/// padding has been removed.
pub const MAX_LEN: usize = 64;

/// A UID that has passed the PS3.5 §9.1 grammar check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

/// Why a string is not a valid UID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("is empty")]
    Empty,
    #[error("is longer than 64 characters")]
    TooLong,
    #[error("has an empty component")]
    EmptyComponent,
    #[error("has a component with a leading zero")]
    LeadingZero,
    #[error("has a character other than digits and dots")]
    BadCharacter,
}

/// Strips the padding a UID carries on the wire: trailing NULs, the
/// standard's padding for UI values. Anything else, a trailing space
/// included, is left for the grammar check to refuse.
pub fn trim(raw: &str) -> &str {
    raw.trim_end_matches('\0')
}

impl Uid {
    /// Checks `raw` (after [`trim`]) against the UID grammar.
    pub fn parse(raw: &str) -> Result<Uid, Error> {
        let s = trim(raw);
        check(s)?;
        Ok(Uid(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Uid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks an already trimmed string against the grammar.
pub fn check(s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(Error::TooLong);
    }
    for component in s.split('.') {
        let bytes = component.as_bytes();
        match bytes {
            [] => return Err(Error::EmptyComponent),
            _ if !bytes.iter().all(u8::is_ascii_digit) => return Err(Error::BadCharacter),
            [b'0', _, ..] => return Err(Error::LeadingZero),
            _ => {}
        }
    }
    Ok(())
}

/// True when `raw` is a valid UID once its padding is removed.
pub fn is_valid(raw: &str) -> bool {
    check(trim(raw)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_uids() {
        for ok in [
            "1.2.840.10008.1.1",
            "1.2.840.10008.5.1.4.1.1.2",
            "0",
            "2.25.268051044599311345688996422911472681751",
            "1.2.3.0.4",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn strips_nul_padding_only_at_the_end() {
        assert_eq!(Uid::parse("1.2.3\0").unwrap().as_str(), "1.2.3");
        assert_eq!(Uid::parse("1.2\0.3"), Err(Error::BadCharacter));
    }

    #[test]
    fn rejects_what_the_grammar_forbids() {
        assert_eq!(check(""), Err(Error::Empty));
        assert_eq!(check("1.2.03.4"), Err(Error::LeadingZero));
        assert_eq!(check("1.2..3"), Err(Error::EmptyComponent));
        assert_eq!(check(".1.2"), Err(Error::EmptyComponent));
        assert_eq!(check("1.2."), Err(Error::EmptyComponent));
        assert_eq!(check("../../etc"), Err(Error::EmptyComponent));
        assert_eq!(check("1.2/../../x"), Err(Error::BadCharacter));
        assert_eq!(check("1.2.3a"), Err(Error::BadCharacter));
        assert_eq!(check("1.2.-3"), Err(Error::BadCharacter));
        let long = format!("1.{}", "2".repeat(63));
        assert_eq!(long.len(), 65);
        assert_eq!(check(&long), Err(Error::TooLong));
        let exactly = format!("1.{}", "2".repeat(62));
        assert_eq!(check(&exactly), Ok(()));
    }
}
