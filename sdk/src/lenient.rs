//! Lenient deserializers for integer fields (the generator's `lenient-integers` step).
//!
//! SuperOffice's sample payloads put fractional numbers into integer fields
//! (`"MemberCount": 99.99`). A strict `i32` would fail the whole response; these accept any
//! finite JSON number in range and truncate toward zero, and numeric strings. Anything else is
//! still an error.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

trait Int: Sized + TryFrom<i64> + fmt::Display {
    const NAME: &'static str;
}
impl Int for i32 {
    const NAME: &'static str = "an i32";
}
impl Int for i64 {
    const NAME: &'static str = "an i64";
}

struct IntVisitor<T>(PhantomData<T>);

impl<T: Int> IntVisitor<T> {
    fn from_f64<E: de::Error>(value: f64) -> Result<T, E> {
        let truncated = value.trunc();
        if !truncated.is_finite() || truncated < i64::MIN as f64 || truncated > i64::MAX as f64 {
            return Err(E::custom(format_args!("{value} is not {}", T::NAME)));
        }
        T::try_from(truncated as i64)
            .map_err(|_| E::custom(format_args!("{value} is out of range for {}", T::NAME)))
    }
}

impl<'de, T: Int> Visitor<'de> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fractions are truncated)", T::NAME)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        T::try_from(value)
            .map_err(|_| E::custom(format_args!("{value} is out of range for {}", T::NAME)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        i64::try_from(value)
            .ok()
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| E::custom(format_args!("{value} is out of range for {}", T::NAME)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        Self::from_f64(value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))?;
        Self::from_f64(value)
    }
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: Int> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "null or {}", T::NAME)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_any(IntVisitor(PhantomData))
            .map(Some)
    }
}

struct VecVisitor<T>(PhantomData<T>);

impl<'de, T: Int> Visitor<'de> for VecVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of {}", T::NAME)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Lenient(value)) = seq.next_element::<Lenient<T>>()? {
            out.push(value);
        }
        Ok(out)
    }
}

struct Lenient<T>(T);

impl<'de, T: Int> de::Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntVisitor(PhantomData))
            .map(Lenient)
    }
}

struct OptionVecVisitor<T>(PhantomData<T>);

impl<'de, T: Int> Visitor<'de> for OptionVecVisitor<T> {
    type Value = Option<Vec<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "null or a list of {}", T::NAME)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_seq(VecVisitor(PhantomData))
            .map(Some)
    }
}

/// `i32`, accepting fractional numbers (truncated) and numeric strings.
pub fn i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    deserializer.deserialize_any(IntVisitor(PhantomData))
}

/// `i64`, accepting fractional numbers (truncated) and numeric strings.
pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(IntVisitor(PhantomData))
}

/// `Option<i32>`: `null` is `None`, numbers as in [`i32()`].
pub fn option_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

/// `Option<i64>`: `null` is `None`, numbers as in [`i64()`].
pub fn option_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

/// `Vec<i32>` with lenient elements.
pub fn vec_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i32>, D::Error> {
    deserializer.deserialize_seq(VecVisitor(PhantomData))
}

/// `Option<Vec<i32>>` with lenient elements.
pub fn option_vec_i32<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<i32>>, D::Error> {
    deserializer.deserialize_option(OptionVecVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Probe {
        #[serde(default, deserialize_with = "super::option_i32")]
        count: Option<i32>,
        #[serde(default, deserialize_with = "super::option_vec_i32")]
        ids: Option<Vec<i32>>,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn fractions_truncate_and_null_or_missing_is_none() {
        assert_eq!(probe(r#"{"count": 99.99}"#).unwrap().count, Some(99));
        assert_eq!(probe(r#"{"count": -2.7}"#).unwrap().count, Some(-2));
        assert_eq!(probe(r#"{"count": 7}"#).unwrap().count, Some(7));
        assert_eq!(probe(r#"{"count": "12"}"#).unwrap().count, Some(12));
        assert_eq!(probe(r#"{"count": null}"#).unwrap().count, None);
        assert_eq!(
            probe(r#"{}"#).unwrap(),
            Probe {
                count: None,
                ids: None
            }
        );
        assert_eq!(
            probe(r#"{"ids": [1, 2.5, "3"]}"#).unwrap().ids,
            Some(vec![1, 2, 3])
        );
        assert_eq!(probe(r#"{"ids": null}"#).unwrap().ids, None);
    }

    #[test]
    fn out_of_range_and_non_numbers_fail() {
        assert!(probe(r#"{"count": 3000000000}"#).is_err());
        assert!(probe(r#"{"count": "abc"}"#).is_err());
        assert!(probe(r#"{"count": true}"#).is_err());
        assert!(probe(r#"{"count": 1e300}"#).is_err());
    }
}
