//! A request body's top level read as JSON reads it: a struct only from an object. serde's
//! derived structs also take an array of their fields in order (`["team-a", "Team A"]` for
//! `{"slug", "name"}`), which no client of a JSON API means and which would let a body that is
//! not what it claims to be pass (a 2xx for clearly invalid input). Only the top level is held
//! to this, where a mistaken array is a whole wrong document.

use serde::de::{Deserialize, Deserializer, Visitor};

/// `T`, read from an object when it is a struct.
pub(super) struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(TopLevel(deserializer)).map(ObjectOnly)
    }
}

/// A deserializer that hands everything to the one it wraps, but asks for a map where a
/// struct is asked for (a struct's visitor reads a map; an array is then a type error).
struct TopLevel<D>(D);

/// Methods passed on unchanged.
macro_rules! pass {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for TopLevel<D> {
    type Error = D::Error;

    pass! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Org {
        slug: String,
        name: Option<String>,
    }

    fn read<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
        serde_json::from_str::<ObjectOnly<T>>(json)
            .map(|o| o.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_struct_is_read_from_an_object_and_nothing_else() {
        assert_eq!(
            read::<Org>(r#"{"slug":"a","name":"A"}"#),
            Ok(Org {
                slug: "a".into(),
                name: Some("A".into())
            })
        );
        let array = read::<Org>(r#"["a","A"]"#).unwrap_err();
        assert!(array.contains("invalid type: sequence"), "{array}");
        // Errors inside are the wrapped deserializer's, as before.
        let unknown = read::<Org>(r#"{"slug":"a","x":1}"#).unwrap_err();
        assert!(unknown.contains("unknown field `x`"), "{unknown}");
        let missing = read::<Org>(r#"{}"#).unwrap_err();
        assert!(missing.contains("missing field `slug`"), "{missing}");
        // Types that are lists or anything stay so.
        assert_eq!(read::<Vec<u8>>("[1,2]"), Ok(vec![1, 2]));
        assert_eq!(
            read::<serde_json::Value>(r#"["a"]"#),
            Ok(serde_json::json!(["a"]))
        );
        assert_eq!(
            read::<Vec<Org>>(r#"[{"slug":"b"}]"#).map(|v| v.len()),
            Ok(1)
        );
    }
}
