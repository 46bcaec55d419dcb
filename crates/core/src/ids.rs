//! Typed identifiers shown with a readable prefix: `req_…`, `grt_…`, `tok_…`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use uuid::Uuid;

/// What an id identifies; gives the prefix.
pub trait IdKind {
    const PREFIX: &'static str;
    const WHAT: &'static str;
    /// The name of the id's type in the UI's TypeScript (`RequestId`).
    const TYPE_NAME: &'static str;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKind;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantKind;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKind;

impl IdKind for RequestKind {
    const TYPE_NAME: &'static str = "RequestId";
    const PREFIX: &'static str = "req_";
    const WHAT: &'static str = "request";
}
impl IdKind for GrantKind {
    const TYPE_NAME: &'static str = "GrantId";
    const PREFIX: &'static str = "grt_";
    const WHAT: &'static str = "grant";
}
impl IdKind for TokenKind {
    const TYPE_NAME: &'static str = "TokenId";
    const PREFIX: &'static str = "tok_";
    const WHAT: &'static str = "token";
}

/// A UUID that knows what it identifies.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id<K> {
    uuid: Uuid,
    kind: PhantomData<K>,
}

pub type RequestId = Id<RequestKind>;
pub type GrantId = Id<GrantKind>;
pub type TokenId = Id<TokenKind>;

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Id<K> {}

impl<K: IdKind> Id<K> {
    pub fn new() -> Self {
        Self::from_uuid(Uuid::new_v4())
    }
    pub fn from_uuid(uuid: Uuid) -> Self {
        Id {
            uuid,
            kind: PhantomData,
        }
    }
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }
}

impl<K: IdKind> Default for Id<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", K::PREFIX, self.uuid.simple())
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a {what} id (expected {prefix}<32 hex digits>)")]
pub struct ParseIdError {
    pub text: String,
    pub what: &'static str,
    pub prefix: &'static str,
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError {
            text: s.chars().take(80).collect(),
            what: K::WHAT,
            prefix: K::PREFIX,
        };
        let rest = s.strip_prefix(K::PREFIX).ok_or_else(err)?;
        if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        Uuid::parse_str(rest)
            .map(Self::from_uuid)
            .map_err(|_| err())
    }
}

impl<K: IdKind> Serialize for Id<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, K: IdKind> Deserialize<'de> for Id<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// In TypeScript an id is what serde writes: its prefix and 32 hex digits, typed as
/// `` `req_${string}` `` so a grant id is not taken for a request id.
#[cfg(feature = "ts")]
impl<K: IdKind + 'static> ts_rs::TS for Id<K> {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn docs() -> Option<String> {
        Some(format!(
            "/**\n * A {} id: `{}` and 32 hex digits.\n */\n",
            K::WHAT,
            K::PREFIX
        ))
    }
    fn name(_: &ts_rs::Config) -> String {
        K::TYPE_NAME.to_string()
    }
    fn inline(_: &ts_rs::Config) -> String {
        format!("`{}${{string}}`", K::PREFIX)
    }
    fn decl(cfg: &ts_rs::Config) -> String {
        format!("type {} = {};", K::TYPE_NAME, Self::inline(cfg))
    }
    fn decl_concrete(cfg: &ts_rs::Config) -> String {
        Self::decl(cfg)
    }
    fn output_path() -> Option<std::path::PathBuf> {
        Some(format!("{}.ts", K::TYPE_NAME).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_prefix() {
        let id = RequestId::new();
        let text = id.to_string();
        assert!(text.starts_with("req_"), "request ids read as req_…");
        assert_eq!(text.parse::<RequestId>().unwrap(), id);
    }

    #[test]
    fn refuses_wrong_prefix_and_garbage() {
        let grant = GrantId::new().to_string();
        assert!(
            grant.parse::<RequestId>().is_err(),
            "a grant id is not a request id"
        );
        assert!("req_zz".parse::<RequestId>().is_err());
        assert!("".parse::<RequestId>().is_err());
        let dashed = format!("req_{}", Uuid::new_v4());
        assert!(dashed.parse::<RequestId>().is_err(), "only the simple form");
    }
}
