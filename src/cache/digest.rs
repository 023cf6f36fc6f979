//! Validated names: a [`Digest`] (64 lowercase hex characters, a blake3 hash)
//! and an output [`Suffix`] (a short lowercase word such as `png`).
//!
//! Every path under `cache/` and `out/` that comes from a manifest is derived
//! from these types, never joined from a received string: a manifest whose
//! hash is `/etc/passwd` or whose suffix is `png/../../x` does not
//! deserialize, so it is refused like any corrupt entry.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// A blake3 hash in hex: exactly 64 characters of `0-9a-f`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Why a string is not a [`Digest`] or a [`Suffix`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadName(String);

impl Digest {
    pub const LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Digest, BadName> {
        if s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest(s.to_string()))
        } else {
            Err(BadName(format!(
                "`{}` is not a digest (64 lowercase hex characters)",
                shorten(s)
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-character fan-out folder (`ab` for `abcdef…`).
    pub fn fanout(&self) -> &str {
        &self.0[..2]
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Digest {
        Digest(h.to_hex().to_string())
    }
}

impl TryFrom<String> for Digest {
    type Error = BadName;

    fn try_from(s: String) -> Result<Digest, BadName> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl std::str::FromStr for Digest {
    type Err = BadName;

    fn from_str(s: &str) -> Result<Digest, BadName> {
        Digest::parse(s)
    }
}

impl Deref for Digest {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Digest> for String {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.0
    }
}

/// The suffix of an output file under its node's `out_stem` (`png`,
/// `panel.png`, `tvshow.nfo`): at most 32 characters, words of `a-z`, `0-9`,
/// `_` and `-` that start with a letter or digit, joined by single dots. No
/// separators, no empty word (so no `..`): `out/<stem>.<suffix>` stays in
/// its folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Suffix(String);

impl Suffix {
    pub const MAX_LEN: usize = 32;

    pub fn parse(s: &str) -> Result<Suffix, BadName> {
        let word = |w: &str| {
            w.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
                && w.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        };
        if s.len() <= Self::MAX_LEN && s.split('.').all(word) {
            Ok(Suffix(s.to_string()))
        } else {
            Err(BadName(format!(
                "`{}` is not an output suffix (at most {} characters: words of a-z, 0-9, `_`, `-` joined by dots)",
                shorten(s),
                Self::MAX_LEN
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Suffix {
    type Error = BadName;

    fn try_from(s: String) -> Result<Suffix, BadName> {
        Suffix::parse(&s)
    }
}

impl From<Suffix> for String {
    fn from(s: Suffix) -> String {
        s.0
    }
}

impl Deref for Suffix {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Suffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Suffix {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Suffix {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A received string for a message: at most 80 characters, control
/// characters escaped, so a hostile value cannot flood or drive a terminal.
pub fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_default).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let good = "0123456789abcdef".repeat(4);
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "",
            "ab",
            "/etc/passwd",
            "../../etc/passwd",
            &good[..63],
            &format!("{good}0"),
            &good.to_uppercase(),
            &format!("{}/{}", &good[..31], &good[..32]),
            &format!("{}\u{e9}", &good[..62]),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?}");
        }
        let hash = blake3::hash(b"x");
        assert_eq!(Digest::from(hash).as_str(), hash.to_hex().as_str());
    }

    #[test]
    fn suffixes() {
        for good in [
            "png",
            "mp4",
            "panel.png",
            "tvshow.nfo",
            "last_frame",
            "a-b",
            "9",
            "a.b.c",
        ] {
            assert!(Suffix::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(33);
        for bad in [
            "", ".", "../x", "a/b", "a\\b", ".png", "png.", "a..b", "..", "PNG", "-x", "_x", "x.-y", "a b", "x\0",
            &long,
        ] {
            assert!(Suffix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_refuses_bad_names() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct O {
            suffix: Suffix,
            hash: Digest,
        }
        let good = "ab".repeat(32);
        assert!(serde_json::from_str::<O>(&format!(r#"{{"suffix":"png","hash":"{good}"}}"#)).is_ok());
        assert!(serde_json::from_str::<O>(&format!(r#"{{"suffix":"../../x","hash":"{good}"}}"#)).is_err());
        assert!(serde_json::from_str::<O>(r#"{"suffix":"png","hash":"/etc/passwd"}"#).is_err());
    }

    #[test]
    fn shorten_escapes_and_cuts() {
        assert_eq!(shorten("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert!(shorten(&"x".repeat(1000)).ends_with('…'));
    }
}
