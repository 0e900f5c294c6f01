//! Turning session records into bytes and back, for backends that store bytes.

use crate::{Error, Lifetime, SessionData, Values};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Turns a [`SessionData`] record into bytes and back.
///
/// Backends that store bytes (Redis, SQL) take one; [`JsonSerializer`] is the default.
/// Implement it for a format of your own:
///
/// ```
/// use sessionkit_core::{Error, Serializer, SessionData};
///
/// /// JSON, but only the values: no metadata is kept.
/// struct ValuesOnly;
///
/// impl Serializer for ValuesOnly {
///     fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
///         serde_json::to_vec(data.values()).map_err(Error::encode)
///     }
///     fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error> {
///         Ok(SessionData::new(serde_json::from_slice(bytes).map_err(Error::decode)?))
///     }
/// }
///
/// let mut data = SessionData::default();
/// data.values_mut().insert("user_id".into(), 42.into());
/// let bytes = ValuesOnly.serialize(&data).unwrap();
/// assert_eq!(bytes, br#"{"user_id":42}"#);
/// assert_eq!(ValuesOnly.deserialize(&bytes).unwrap().values(), data.values());
/// ```
pub trait Serializer: Send + Sync + 'static {
    /// Encode a record.
    fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error>;
    /// Decode a record; bytes that are not a record give [`Error::Serialization`].
    fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error>;
}

impl<S: Serializer + ?Sized> Serializer for std::sync::Arc<S> {
    fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
        (**self).serialize(data)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error> {
        (**self).deserialize(bytes)
    }
}

/// The default serializer: a plain JSON object any language can read.
///
/// A record is stored as
/// `{"created": <unix secs>, "accessed": <unix secs>, "data": {"user_id": 42, ...}}`,
/// the session's values as an ordinary JSON object under `data`; a session's own lifetime
/// and the user it is bound to, when it has them, as `"lifetime"` and `"user"` beside them.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonSerializer;

#[derive(Serialize)]
struct JsonRecordRef<'a> {
    created: u64,
    accessed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifetime: Option<JsonLifetime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    data: &'a Values,
}

#[derive(Deserialize)]
struct JsonRecord {
    created: u64,
    accessed: u64,
    #[serde(default)]
    lifetime: Option<JsonLifetime>,
    #[serde(default)]
    user: Option<String>,
    data: Values,
}

/// A session's own lifetime in a JSON record: `"browser_session"`, `{"until": <unix secs>}`
/// or `{"inactivity": <secs>}`; absent when the session has none.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonLifetime {
    BrowserSession,
    Until(u64),
    Inactivity(u64),
}

impl From<Lifetime> for JsonLifetime {
    fn from(lifetime: Lifetime) -> Self {
        match lifetime {
            Lifetime::BrowserSession => JsonLifetime::BrowserSession,
            Lifetime::Until(at) => JsonLifetime::Until(at),
            Lifetime::Inactivity(d) => JsonLifetime::Inactivity(d.as_secs()),
        }
    }
}

impl From<JsonLifetime> for Lifetime {
    fn from(lifetime: JsonLifetime) -> Self {
        match lifetime {
            JsonLifetime::BrowserSession => Lifetime::BrowserSession,
            JsonLifetime::Until(at) => Lifetime::Until(at),
            JsonLifetime::Inactivity(s) => Lifetime::Inactivity(std::time::Duration::from_secs(s)),
        }
    }
}

impl JsonSerializer {
    /// How deeply arrays and objects may nest inside a value (`[[1]]` is 2): serde_json
    /// refuses to read deeper documents, so [`serialize`](Serializer::serialize) refuses to
    /// write them, and no record is ever stored that cannot be loaded again.
    pub const MAX_DEPTH: usize = 125;
}

impl Serializer for JsonSerializer {
    fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
        check_depth(data.values(), JsonSerializer::MAX_DEPTH)?;
        serde_json::to_vec(&JsonRecordRef {
            created: data.created_unix(),
            accessed: data.last_access_unix(),
            lifetime: data.lifetime().map(JsonLifetime::from),
            user: data.user(),
            data: data.values(),
        })
        .map_err(Error::encode)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error> {
        let record: JsonRecord = serde_json::from_slice(bytes).map_err(Error::decode)?;
        let mut data = SessionData::from_parts(record.data, record.created, record.accessed);
        data.set_lifetime(record.lifetime.map(Lifetime::from));
        data.set_user(record.user.map(Into::into));
        Ok(data)
    }
}

/// [`Error::Serialization`] when a value in `values` nests arrays and objects deeper than
/// `max` (`[[1]]` is 2). Walks with a stack of its own, so a value of any depth is measured
/// without recursion, and stops as soon as the limit is passed.
fn check_depth(values: &Values, max: usize) -> Result<(), Error> {
    let mut stack: Vec<(&Value, usize)> = values.values().map(|value| (value, 0)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > max {
            return Err(Error::encode(format!(
                "a session value nests arrays and objects more than {max} levels deep, \
                 which could not be read back; store it flatter"
            )));
        }
        stack.extend(children.map(|child| (child, depth)));
    }
    Ok(())
}

#[cfg(feature = "bincode")]
pub use self::binary::BincodeSerializer;

#[cfg(feature = "bincode")]
mod binary {
    use super::Serializer;
    use crate::{Error, Lifetime, SessionData, Values};
    use bincode::de::{BorrowDecode, BorrowDecoder, Decode};
    use bincode::enc::{Encode, Encoder};
    use bincode::error::{DecodeError, EncodeError};
    use serde_json::{Number, Value};
    use std::borrow::Cow;
    use std::time::Duration;

    /// A compact binary serializer on [bincode](https://docs.rs/bincode) 2.
    ///
    /// It round-trips every value a session can hold: null, booleans, every `i64`, `u64` and
    /// `f64`, strings, and arrays and objects nested up to
    /// [`MAX_DEPTH`](BincodeSerializer::MAX_DEPTH) - 1 levels inside a value. Deeper values
    /// are refused when written; bytes that are not a record, or that nest deeper, decode as
    /// [`Error::Serialization`], never a panic or a stack overflow.
    ///
    /// This uses bincode 2.x: the 3.0.0 release on crates.io is an empty tombstone, and
    /// bincode is no longer maintained, so the format is pinned here by a version byte.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct BincodeSerializer;

    impl BincodeSerializer {
        /// How deeply arrays and objects may nest in a decoded record.
        pub const MAX_DEPTH: usize = 128;
        /// The record format, the first byte of every record: a later format can read the
        /// records of this one by it.
        const FORMAT: u8 = 1;
    }

    /// A record as it is stored, in bincode's `standard` layout: the fields in this order,
    /// integers as varints (one byte below 251), an `Option` as a 0 or 1 byte and then its
    /// value, an enum as its variant's index and then its fields, a string as its length and
    /// its UTF-8 bytes. `format` is a plain byte and comes first, so a later format can be told
    /// from this one by the first byte before anything else is read.
    ///
    /// The user is borrowed both ways: from the session when writing, and from the input when
    /// reading, so a claimed length beyond the bytes left fails before anything is allocated.
    #[derive(bincode::Encode, bincode::BorrowDecode)]
    #[bincode(decode_context = "()")]
    struct Record<'a> {
        format: u8,
        /// Unix seconds.
        created: u64,
        /// Unix seconds.
        accessed: u64,
        lifetime: Option<RecordLifetime>,
        user: Option<&'a str>,
        values: Tree<'a>,
    }

    /// [`Lifetime`] as a record stores it: the inactivity window in whole seconds.
    #[derive(Clone, Copy, bincode::Encode, bincode::Decode)]
    enum RecordLifetime {
        BrowserSession,
        /// Unix seconds.
        Until(u64),
        /// Seconds.
        Inactivity(u64),
    }

    impl From<Lifetime> for RecordLifetime {
        fn from(lifetime: Lifetime) -> Self {
            match lifetime {
                Lifetime::BrowserSession => RecordLifetime::BrowserSession,
                Lifetime::Until(at) => RecordLifetime::Until(at),
                Lifetime::Inactivity(window) => RecordLifetime::Inactivity(window.as_secs()),
            }
        }
    }

    impl From<RecordLifetime> for Lifetime {
        fn from(lifetime: RecordLifetime) -> Self {
            match lifetime {
                RecordLifetime::BrowserSession => Lifetime::BrowserSession,
                RecordLifetime::Until(at) => Lifetime::Until(at),
                RecordLifetime::Inactivity(secs) => Lifetime::Inactivity(Duration::from_secs(secs)),
            }
        }
    }

    /// The session's values: borrowed when writing, owned once read.
    ///
    /// Written by hand, not derived. serde_json's `Value` implements serde by asking the
    /// format what comes next (`deserialize_any`), which only a self-describing format can
    /// answer, and bincode is not one. A derived recursive enum would decode nesting by
    /// recursion without any bound, so hostile bytes could overflow the stack. Here a map is
    /// its length and its entries (key, value); a value is a tag byte and its contents; and
    /// reading stops with an error at [`MAX_DEPTH`](BincodeSerializer::MAX_DEPTH).
    struct Tree<'a>(Cow<'a, Values>);

    const NULL: u8 = 0;
    const FALSE: u8 = 1;
    const TRUE: u8 = 2;
    const UINT: u8 = 3;
    const INT: u8 = 4;
    const FLOAT: u8 = 5;
    const STRING: u8 = 6;
    const ARRAY: u8 = 7;
    const OBJECT: u8 = 8;

    struct ValueRef<'a>(&'a Value);
    struct MapRef<'a>(&'a Values);

    impl Encode for Tree<'_> {
        fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
            MapRef(&self.0).encode(e)
        }
    }

    impl<'de> BorrowDecode<'de, ()> for Tree<'_> {
        fn borrow_decode<D: BorrowDecoder<'de, Context = ()>>(
            d: &mut D,
        ) -> Result<Self, DecodeError> {
            decode_map(d, 0).map(|values| Tree(Cow::Owned(values)))
        }
    }

    impl Encode for MapRef<'_> {
        fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
            self.0.len().encode(e)?;
            for (key, value) in self.0 {
                key.as_str().encode(e)?;
                ValueRef(value).encode(e)?;
            }
            Ok(())
        }
    }

    impl Encode for ValueRef<'_> {
        fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
            match self.0 {
                Value::Null => NULL.encode(e),
                Value::Bool(false) => FALSE.encode(e),
                Value::Bool(true) => TRUE.encode(e),
                Value::Number(n) => {
                    if let Some(u) = n.as_u64() {
                        UINT.encode(e)?;
                        u.encode(e)
                    } else if let Some(i) = n.as_i64() {
                        INT.encode(e)?;
                        i.encode(e)
                    } else if let Some(f) = n.as_f64() {
                        FLOAT.encode(e)?;
                        f.encode(e)
                    } else {
                        Err(EncodeError::Other("a number that is not i64, u64 or f64"))
                    }
                }
                Value::String(s) => {
                    STRING.encode(e)?;
                    s.as_str().encode(e)
                }
                Value::Array(items) => {
                    ARRAY.encode(e)?;
                    items.len().encode(e)?;
                    items.iter().try_for_each(|item| ValueRef(item).encode(e))
                }
                Value::Object(map) => {
                    OBJECT.encode(e)?;
                    MapRef(map).encode(e)
                }
            }
        }
    }

    /// A string borrowed from the input first: a claimed length beyond the bytes left fails
    /// before anything is allocated.
    fn decode_string<'de, D: BorrowDecoder<'de, Context = ()>>(
        d: &mut D,
    ) -> Result<String, DecodeError> {
        <&'de str as BorrowDecode<'de, ()>>::borrow_decode(d).map(str::to_owned)
    }

    fn decode_map<'de, D: BorrowDecoder<'de, Context = ()>>(
        d: &mut D,
        depth: usize,
    ) -> Result<Values, DecodeError> {
        let len = usize::decode(d)?;
        let mut map = Values::new();
        for _ in 0..len {
            let key = decode_string(d)?;
            let value = decode_value(d, depth)?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn decode_value<'de, D: BorrowDecoder<'de, Context = ()>>(
        d: &mut D,
        depth: usize,
    ) -> Result<Value, DecodeError> {
        if depth >= BincodeSerializer::MAX_DEPTH {
            return Err(DecodeError::Other("session values nest too deeply"));
        }
        Ok(match u8::decode(d)? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            UINT => Value::Number(u64::decode(d)?.into()),
            INT => Value::Number(i64::decode(d)?.into()),
            FLOAT => {
                let f = f64::decode(d)?;
                Value::Number(
                    Number::from_f64(f)
                        .ok_or(DecodeError::Other("a float that is NaN or infinite"))?,
                )
            }
            STRING => Value::String(decode_string(d)?),
            ARRAY => {
                let len = usize::decode(d)?;
                // Never trust a claimed length for an allocation: it comes from stored bytes.
                let mut items = Vec::with_capacity(len.min(64));
                for _ in 0..len {
                    items.push(decode_value(d, depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => Value::Object(decode_map(d, depth + 1)?),
            _ => return Err(DecodeError::Other("unknown value tag")),
        })
    }

    /// The largest record decoded.
    const LIMIT: usize = 64 * 1024 * 1024;

    fn config() -> impl bincode::config::Config {
        bincode::config::standard().with_limit::<LIMIT>()
    }

    impl Serializer for BincodeSerializer {
        fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
            super::check_depth(data.values(), BincodeSerializer::MAX_DEPTH - 1)?;
            let record = Record {
                format: BincodeSerializer::FORMAT,
                created: data.created_unix(),
                accessed: data.last_access_unix(),
                lifetime: data.lifetime().map(RecordLifetime::from),
                user: data.user(),
                values: Tree(Cow::Borrowed(data.values())),
            };
            let bytes = bincode::encode_to_vec(record, config()).map_err(Error::encode)?;
            if bytes.len() > LIMIT {
                return Err(Error::encode(format!(
                    "the record is {} bytes, over the {LIMIT}-byte limit it could be read \
                     back under",
                    bytes.len()
                )));
            }
            Ok(bytes)
        }

        fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error> {
            match bytes.first() {
                Some(&BincodeSerializer::FORMAT) => {}
                Some(format) => {
                    return Err(Error::decode(format!(
                        "unknown bincode record format {format}"
                    )));
                }
                None => return Err(Error::decode("an empty bincode record")),
            }
            let (record, _): (Record<'_>, usize) =
                bincode::borrow_decode_from_slice(bytes, config()).map_err(Error::decode)?;
            let mut data = SessionData::from_parts(
                record.values.0.into_owned(),
                record.created,
                record.accessed,
            );
            data.set_lifetime(record.lifetime.map(Lifetime::from));
            data.set_user(record.user.map(Into::into));
            Ok(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> SessionData {
        let values = json!({
            "user_id": 42,
            "name": "Zoë 🔑",
            "neg": i64::MIN,
            "big": u64::MAX,
            "pi": 3.5,
            "flags": [true, false, null],
            "nested": {"a": {"b": [1, {"c": "d"}]}, "empty": {}, "list": []},
        });
        let serde_json::Value::Object(values) = values else {
            unreachable!()
        };
        SessionData::from_parts(values, 1_700_000_000, 1_700_000_123)
    }

    /// A record whose value `"deep"` nests `depth` arrays, innermost holding a number.
    fn nested(depth: usize) -> SessionData {
        let mut deep = serde_json::Value::from(1);
        for _ in 0..depth {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let mut values = Values::new();
        values.insert("deep".into(), deep);
        SessionData::from_parts(values, 1, 1)
    }

    /// Every serializer in this crate, with the deepest value it must take.
    fn serializers() -> Vec<(&'static str, Box<dyn Serializer>, usize)> {
        #[cfg_attr(not(feature = "bincode"), allow(unused_mut))]
        let mut all: Vec<(&'static str, Box<dyn Serializer>, usize)> =
            vec![("json", Box::new(JsonSerializer), JsonSerializer::MAX_DEPTH)];
        #[cfg(feature = "bincode")]
        all.push((
            "bincode",
            Box::new(BincodeSerializer),
            BincodeSerializer::MAX_DEPTH - 1,
        ));
        all
    }

    #[test]
    fn what_is_written_reads_back_and_what_could_not_is_refused_on_write() {
        for (name, serializer, max) in serializers() {
            for depth in [0, 1, 2, max - 1, max] {
                let data = nested(depth);
                let bytes = serializer.serialize(&data).unwrap();
                assert_eq!(
                    serializer.deserialize(&bytes).unwrap(),
                    data,
                    "{name} {depth}"
                );
            }
            for depth in [max + 1, max + 2, 10_000] {
                assert!(
                    matches!(
                        serializer.serialize(&nested(depth)),
                        Err(Error::Serialization {
                            action: "encoded",
                            ..
                        })
                    ),
                    "{name}: a value {depth} deep was written"
                );
            }
        }
    }

    #[test]
    fn a_sessions_own_lifetime_round_trips_in_every_serializer() {
        for (name, serializer, _) in serializers() {
            for lifetime in [
                None,
                Some(Lifetime::BrowserSession),
                Some(Lifetime::Until(1_800_000_000)),
                Some(Lifetime::Inactivity(std::time::Duration::from_secs(
                    30 * 86_400,
                ))),
            ] {
                let mut data = sample();
                data.set_lifetime(lifetime);
                let bytes = serializer.serialize(&data).unwrap();
                let read = serializer.deserialize(&bytes).unwrap();
                assert_eq!(read.lifetime(), lifetime, "{name}");
                assert_eq!(read, data, "{name}");
            }
        }
        // Records written before lifetimes existed still read, without one.
        let old = br#"{"created":1,"accessed":2,"data":{"n":1}}"#;
        assert_eq!(JsonSerializer.deserialize(old).unwrap().lifetime(), None);
    }

    #[test]
    fn the_user_a_session_is_bound_to_round_trips_in_every_serializer() {
        for (name, serializer, _) in serializers() {
            for user in [None, Some("42"), Some("zoë@example.com")] {
                let mut data = sample();
                data.set_user(user.map(Into::into));
                let read = serializer
                    .deserialize(&serializer.serialize(&data).unwrap())
                    .unwrap();
                assert_eq!(read.user(), user, "{name}");
                assert_eq!(read, data, "{name}");
            }
        }
        // Records written before users existed still read, unbound; a bound one is `"user"`.
        let old = br#"{"created":1,"accessed":2,"lifetime":"browser_session","data":{}}"#;
        assert_eq!(JsonSerializer.deserialize(old).unwrap().user(), None);
        let mut data = sample();
        data.set_user(Some("42".into()));
        let parsed: serde_json::Value =
            serde_json::from_slice(&JsonSerializer.serialize(&data).unwrap()).unwrap();
        assert_eq!(parsed["user"], "42");
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_records_name_their_format_and_others_are_refused() {
        // Format 1: the format byte; created 1 and accessed 2 (varints); the lifetime, `Some`
        // (1) of variant 0, a browser session; no user (0); then the values: one entry, key
        // "n" (length 1), a string (tag 6) "x".
        let record = [1u8, 1, 2, 1, 0, 0, 1, 1, b'n', STRING_TAG_FOR_TEST, 1, b'x'];
        let mut values = Values::new();
        values.insert("n".into(), "x".into());
        let read = BincodeSerializer.deserialize(&record).unwrap();
        assert_eq!(read.values(), &values);
        assert_eq!(read.lifetime(), Some(Lifetime::BrowserSession));
        assert_eq!(read.user(), None);
        assert_eq!(BincodeSerializer.serialize(&read).unwrap(), record);
        // Each lifetime and a user, byte for byte: `Some`, the variant, its number.
        let mut data = SessionData::from_parts(Values::new(), 1, 2);
        for (lifetime, bytes) in [
            (None, &[0u8][..]),
            (Some(Lifetime::BrowserSession), &[1, 0]),
            (Some(Lifetime::Until(300)), &[1, 1, 251, 44, 1]),
            (
                Some(Lifetime::Inactivity(std::time::Duration::from_secs(60))),
                &[1, 2, 60],
            ),
        ] {
            data.set_lifetime(lifetime);
            data.set_user(Some("ab".into()));
            let mut expected = vec![1u8, 1, 2];
            expected.extend_from_slice(bytes);
            expected.extend_from_slice(&[1, 2, b'a', b'b', 0]);
            assert_eq!(BincodeSerializer.serialize(&data).unwrap(), expected);
            assert_eq!(BincodeSerializer.deserialize(&expected).unwrap(), data);
        }
        for format in [0, 2, 255] {
            let mut other = record;
            other[0] = format;
            assert!(matches!(
                BincodeSerializer.deserialize(&other),
                Err(Error::Serialization {
                    action: "decoded",
                    ..
                })
            ));
        }
    }

    #[test]
    fn json_decodes_with_serde_json_alone() {
        // Whitespace, other key orders and escapes are ordinary JSON.
        let bytes =
            br#" { "data" : {"a":"\u00e9\n", "b":[1,{"c":null}]}, "accessed": 2, "created": 1 } "#;
        let record = JsonSerializer.deserialize(bytes).unwrap();
        assert_eq!(record.created_unix(), 1);
        assert_eq!(record.last_access_unix(), 2);
        assert_eq!(record.values()["a"], "é\n");
    }

    #[test]
    fn json_is_a_plain_object_with_the_values_under_data() {
        let bytes = JsonSerializer.serialize(&sample()).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed["data"]["user_id"], 42);
        assert_eq!(parsed["created"], 1_700_000_000);
        assert_eq!(parsed["accessed"], 1_700_000_123);
        assert_eq!(JsonSerializer.deserialize(&bytes).unwrap(), sample());
    }

    #[test]
    fn json_rejects_garbage_without_panicking() {
        for bytes in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"{\"data\":1}",
            &[0xff, 0xfe],
        ] {
            assert!(matches!(
                JsonSerializer.deserialize(bytes),
                Err(Error::Serialization { .. })
            ));
        }
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_round_trips_every_value_kind() {
        let bytes = BincodeSerializer.serialize(&sample()).unwrap();
        assert_eq!(BincodeSerializer.deserialize(&bytes).unwrap(), sample());
        // Smaller than JSON for the same record.
        assert!(bytes.len() < JsonSerializer.serialize(&sample()).unwrap().len());
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_rejects_garbage_truncation_and_deep_nesting() {
        let refused = |bytes: &[u8]| {
            matches!(
                BincodeSerializer.deserialize(bytes),
                Err(Error::Serialization {
                    action: "decoded",
                    ..
                })
            )
        };
        let bytes = BincodeSerializer.serialize(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(refused(&bytes[..cut]), "cut at {cut}");
        }
        assert!(refused(&[9, 9, 9]));
        // Bad tags in the envelope: an `Option` byte that is neither 0 nor 1, a lifetime
        // variant that does not exist, a user that is not UTF-8, an unknown value tag.
        assert!(refused(&[1, 0, 0, 2, 0, 0, 0]));
        assert!(refused(&[1, 0, 0, 1, 3, 0, 0, 0]));
        assert!(refused(&[1, 0, 0, 0, 1, 1, 0xff, 0]));
        assert!(refused(&with_value(&[9])));
        // The same envelope holding a value that is well formed reads: what follows fails
        // on the value alone.
        assert!(
            BincodeSerializer
                .deserialize(&with_value(&[NULL_TAG_FOR_TEST]))
                .is_ok()
        );
        // Bytes nesting deeper than the limit (as a record of another writer could) are an
        // error, not a stack overflow: the record's value holds arrays 200 deep. The limit
        // itself still reads.
        let arrays = |depth: usize| {
            let mut value: Vec<u8> = std::iter::repeat_n([ARRAY_TAG_FOR_TEST, 1], depth)
                .flatten()
                .collect();
            value.push(NULL_TAG_FOR_TEST);
            with_value(&value)
        };
        assert!(
            BincodeSerializer
                .deserialize(&arrays(BincodeSerializer::MAX_DEPTH - 1))
                .is_ok()
        );
        assert!(refused(&arrays(BincodeSerializer::MAX_DEPTH)));
        assert!(refused(&arrays(200)));
        assert!(refused(&arrays(100_000)));
        // A huge claimed length must fail on the missing bytes, not allocate: of an array, a
        // string, a map, and the user.
        let huge = [253u8, 255, 255, 255, 255, 255, 255, 255, 127];
        for tag in [ARRAY_TAG_FOR_TEST, STRING_TAG_FOR_TEST, OBJECT_TAG_FOR_TEST] {
            let mut value = vec![tag];
            value.extend_from_slice(&huge);
            assert!(refused(&with_value(&value)));
        }
        let mut user = vec![1u8, 0, 0, 0, 1];
        user.extend_from_slice(&huge);
        assert!(refused(&user));
    }

    /// A format 1 record (created and accessed 0, no lifetime, no user) whose one value, under
    /// the key "v", is `value`'s bytes.
    #[cfg(feature = "bincode")]
    fn with_value(value: &[u8]) -> Vec<u8> {
        let mut record = vec![1u8, 0, 0, 0, 0, 1, 1, b'v'];
        record.extend_from_slice(value);
        record
    }

    #[cfg(feature = "bincode")]
    const NULL_TAG_FOR_TEST: u8 = 0;
    #[cfg(feature = "bincode")]
    const STRING_TAG_FOR_TEST: u8 = 6;
    #[cfg(feature = "bincode")]
    const ARRAY_TAG_FOR_TEST: u8 = 7;
    #[cfg(feature = "bincode")]
    const OBJECT_TAG_FOR_TEST: u8 = 8;
}

#[cfg(all(test, feature = "bincode"))]
mod bincode_limits {
    use super::*;

    #[test]
    fn bincode_record_claiming_a_huge_string_is_an_error() {
        // Found by fuzzing: a 56-byte record claiming a string of tens of megabytes made the
        // decoder allocate that much before failing. Strings are now borrowed from the input
        // first, so the claim fails on the missing bytes (the allocation itself is not
        // measurable here without an unsafe counting allocator).
        let input = b"\x01\xfc\x00\xf1\x53\x64\x65\x53\xfc\x29\x60\xf1\x03\x06\x6e\x07\x07\x73\x07\x65\x07\x07\x07\x07\x07\x07\x07\x00\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x03\x01\x04\x66\x06\x75\x7a\x7a";
        assert!(BincodeSerializer.deserialize(input).is_err());
    }
}
