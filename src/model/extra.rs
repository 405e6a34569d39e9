//! Fields an order carries that the model does not know: kept as sent, and
//! the deserialisation that sets them apart from the known ones.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// What to do with a field the model does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// Keep it with its object, store it and serve it back as sent: an
    /// upstream schema that grows does not stop the cache from filling.
    #[default]
    Keep,
    /// Refuse the order (a closed schema).
    Reject,
}

impl std::str::FromStr for UnknownFields {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(UnknownFields::Keep),
            "reject" => Ok(UnknownFields::Reject),
            other => Err(format!("{other:?} is neither \"keep\" nor \"reject\"")),
        }
    }
}

impl fmt::Display for UnknownFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnknownFields::Keep => "keep",
            UnknownFields::Reject => "reject",
        })
    }
}

/// The fields of one JSON object that the model does not know, in the order
/// they were sent, each value exactly as sent (`1e3` stays `1e3`, `1.0`
/// stays `1.0`). Serialised, they follow the object's known fields.
///
/// # Examples
///
/// ```
/// use order_cache::Order;
///
/// let sent = std::str::from_utf8(include_bytes!("../../examples/example.json"))
///     .unwrap()
///     .replace(r#""status":202"#, r##""status":202,"colour":{"name":"red","n":1e3}"##);
/// let order = Order::decode(sent.as_bytes()).unwrap();
/// let extra = &order.items[0].extra;
/// assert_eq!(extra.len(), 1);
/// assert_eq!(extra.get("colour").unwrap().get(), r#"{"name":"red","n":1e3}"#);
/// let served = order.to_json();
/// assert!(std::str::from_utf8(&served).unwrap().contains(r#""status":202,"colour":{"name":"red","n":1e3}}"#));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Extra(Vec<(String, Box<RawValue>)>);

impl Extra {
    /// Whether the object had no unknown field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many unknown fields the object had.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The value sent for `name`.
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Each field's name and value, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_ref()))
    }

    /// The fields as one JSON object's text, as the store keeps them; `None`
    /// when there are none.
    pub fn to_object(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        // A map of strings to raw JSON always serialises.
        serde_json::to_string(self).ok()
    }

    /// The fields of a JSON object's text, as [`Extra::to_object`] wrote it.
    ///
    /// # Errors
    ///
    /// When the text is not a JSON object, or names a field twice.
    pub fn from_object(text: &str) -> Result<Extra, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Adds a field that `known` (the object's known fields) does not name.
    /// Refused: a name that differs from a known field only in case, which
    /// readers that match names without case (Go's `encoding/json`) would
    /// take for the known field; a value nested deeper than
    /// [`MAX_EXTRA_DEPTH`](super::MAX_EXTRA_DEPTH), or with a `\u` escape
    /// that is half a surrogate pair (the known fields' strings are refused
    /// for both already); a NUL character in the name or a string of the
    /// value. PostgreSQL keeps the last two in a `json` column but cannot
    /// turn them into text or `jsonb` (see [`check_value`]).
    pub(super) fn insert<E: de::Error>(
        &mut self,
        name: Cow<'_, str>,
        value: Box<RawValue>,
        known: &[&str],
    ) -> Result<(), E> {
        if let Some(k) = known.iter().find(|k| same_but_case(k, &name)) {
            return Err(E::custom(format_args!(
                "field `{name}` differs from the field `{k}` only in case"
            )));
        }
        if name.contains('\0') {
            return Err(E::custom("a field name must not contain NUL characters"));
        }
        check_value(value.get().as_bytes())
            .map_err(|problem| E::custom(format_args!("field `{name}`: {problem}")))?;
        self.0.push((name.into_owned(), value));
        Ok(())
    }

    /// Refuses a name given twice, once the object is read: as a known field
    /// given twice is refused. Sorted rather than searched at each insert,
    /// so that many fields cost n log n, not n².
    pub(super) fn finish<E: de::Error>(self) -> Result<Extra, E> {
        if self.0.len() > 1 {
            let mut names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(E::custom(format_args!("duplicate field `{}`", w[0])));
            }
        }
        Ok(self)
    }

    /// Each field's name with `prefix` (`delivery.`, `items[].`).
    pub(super) fn names<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
        self.0.iter().map(move |(n, _)| format!("{prefix}{n}"))
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Extra) -> bool {
        self.0.len() == other.0.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((a, x), (b, y))| a == b && x.get() == y.get())
    }
}

impl Eq for Extra {}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extra, A::Error> {
                let mut extra = Extra::default();
                while let Some(Key(name)) = map.next_key()? {
                    extra.insert(name, map.next_value()?, &[])?;
                }
                extra.finish()
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Whether a reader that matches names without case takes `name` for the
/// ASCII name `known`: Go's `encoding/json` folds case as `bytes.EqualFold`
/// does, which also folds the Kelvin sign to `k` and the long s to `s`.
fn same_but_case(known: &str, name: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{17F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    known.chars().map(fold).eq(name.chars().map(fold))
}

/// What is wrong with an unknown field's value.
#[derive(Debug, PartialEq, Eq)]
enum ValueProblem {
    TooDeep,
    LoneSurrogate,
    Nul,
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::TooDeep => {
                write!(f, "nested more than {} levels deep", super::MAX_EXTRA_DEPTH)
            }
            ValueProblem::LoneSurrogate => f.write_str("a string holds half a surrogate pair"),
            ValueProblem::Nul => f.write_str("a string holds a NUL character (\\u0000)"),
        }
    }
}

/// Checks a value serde_json has already read as valid JSON text for what
/// reading it raw does not check: its depth (a raw value is read without
/// serde_json's recursion limit) and its `\u` escapes' surrogate pairs.
fn check_value(b: &[u8]) -> Result<(), ValueProblem> {
    let hex = |at: usize| {
        b.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match (in_string, c) {
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > super::MAX_EXTRA_DEPTH {
                    return Err(ValueProblem::TooDeep);
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            (_, b'"') => in_string = !in_string,
            (true, b'\\') => {
                if b.get(i + 1) == Some(&b'u') {
                    let unit = hex(i + 2).unwrap_or(0);
                    if unit == 0 {
                        return Err(ValueProblem::Nul);
                    }
                    if is_low(unit) {
                        return Err(ValueProblem::LoneSurrogate);
                    }
                    if is_high(unit) {
                        let pair = b.get(i + 6..i + 8) == Some(b"\\u".as_slice())
                            && hex(i + 8).is_some_and(is_low);
                        if !pair {
                            return Err(ValueProblem::LoneSurrogate);
                        }
                        i += 6;
                    }
                    i += 6;
                    continue;
                }
                // Any other escape is two bytes: skip the escaped one.
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// An object's key, borrowed from the payload where it has no escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// `Deserialize` for a struct of the model: each known field once (a field
/// missing or given twice is refused, as serde's derive does), every other
/// field into its `extra`. The fields listed must be the struct's, but for
/// `extra`: the struct literal it builds does not compile otherwise.
macro_rules! deserialize_object {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                const FIELDS: &[&str] = &[$(stringify!($field)),+];
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        $(let mut $field = None;)+
                        let mut extra = $crate::model::Extra::default();
                        while let Some($crate::model::extra::Key(key)) = map.next_key()? {
                            match key.as_ref() {
                                $(stringify!($field) => {
                                    if $field.is_some() {
                                        return Err(A::Error::duplicate_field(stringify!($field)));
                                    }
                                    $field = Some(map.next_value()?);
                                })+
                                _ => extra.insert(key, map.next_value()?, FIELDS)?,
                            }
                        }
                        Ok($name {
                            $($field: $field.ok_or_else(|| A::Error::missing_field(stringify!($field)))?,)+
                            extra: extra.finish()?,
                        })
                    }
                }
                d.deserialize_struct(stringify!($name), FIELDS, Fields)
            }
        }
    };
}

pub(super) use deserialize_object;
