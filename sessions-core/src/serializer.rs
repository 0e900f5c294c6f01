//! Turning session records into bytes and back, for backends that store bytes.

use crate::{Error, SessionData, Values};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Turns a [`SessionData`] record into bytes and back.
///
/// Backends that store bytes (Redis, SQL) take one; [`JsonSerializer`] is the default.
/// Implement it for a format of your own:
///
/// ```
/// use sessions_core::{Error, Serializer, SessionData};
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
/// the session's values as an ordinary JSON object under `data`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonSerializer;

#[derive(Serialize)]
struct JsonRecordRef<'a> {
    created: u64,
    accessed: u64,
    data: &'a Values,
}

#[derive(Deserialize)]
struct JsonRecord {
    created: u64,
    accessed: u64,
    data: Values,
}

impl Serializer for JsonSerializer {
    fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&JsonRecordRef {
            created: data.created_unix(),
            accessed: data.last_access_unix(),
            data: data.values(),
        })
        .map_err(Error::encode)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error> {
        match decode_written_layout(bytes) {
            Some(record) => Ok(record),
            None => decode_with_serde(bytes).map_err(Error::decode),
        }
    }
}

/// Any JSON record, parsed by serde alone.
fn decode_with_serde(bytes: &[u8]) -> Result<SessionData, serde_json::Error> {
    let record: JsonRecord = serde_json::from_slice(bytes)?;
    Ok(SessionData::from_parts(
        record.data,
        record.created,
        record.accessed,
    ))
}

/// The record exactly as [`JsonSerializer::serialize`] writes it,
/// `{"created":<digits>,"accessed":<digits>,"data":{...}}` without whitespace, decoded with
/// the envelope matched byte for byte: the values by [`flat_values`] when they are all plain,
/// else by serde. Anything else (other key order, whitespace, numbers this does not take) is
/// `None`, and the caller parses the whole record with serde: for every input either both
/// give the same record or this gives `None`.
fn decode_written_layout(bytes: &[u8]) -> Option<SessionData> {
    let rest = bytes.strip_prefix(br#"{"created":"#)?;
    let (created, rest) = leading_u64(rest)?;
    let rest = rest.strip_prefix(br#","accessed":"#)?;
    let (accessed, rest) = leading_u64(rest)?;
    let values = rest.strip_prefix(br#","data":"#)?.strip_suffix(b"}")?;
    let values = match flat_values(values) {
        Some(values) => values,
        None => serde_json::from_slice(values).ok()?,
    };
    Some(SessionData::from_parts(values, created, accessed))
}

/// A JSON object of plain values as serde_json writes it, `{"key":value,...}` without
/// whitespace, each value `true`, `false`, `null`, an unsigned integer [`leading_u64`] takes
/// or a string without escapes; later duplicates replace earlier ones, as with serde. Anything
/// else (nested values, other numbers, escapes, whitespace) is `None`, and the caller lets
/// serde parse the object: for every input either both give the same map or this gives `None`.
fn flat_values(bytes: &[u8]) -> Option<Values> {
    let mut rest = bytes.strip_prefix(b"{")?;
    let mut values = Values::new();
    if rest == b"}" {
        return Some(values);
    }
    loop {
        let (key, after) = plain_string(rest)?;
        let after = after.strip_prefix(b":")?;
        let (value, after) = match after.first()? {
            b'"' => {
                let (text, after) = plain_string(after)?;
                (Value::String(text.to_owned()), after)
            }
            b't' => (Value::Bool(true), after.strip_prefix(b"true")?),
            b'f' => (Value::Bool(false), after.strip_prefix(b"false")?),
            b'n' => (Value::Null, after.strip_prefix(b"null")?),
            _ => {
                let (n, after) = leading_u64(after)?;
                (Value::from(n), after)
            }
        };
        values.insert(key.to_owned(), value);
        match after {
            [b',', tail @ ..] => rest = tail,
            b"}" => return Some(values),
            _ => return None,
        }
    }
}

/// A JSON string at the start of `bytes` that needs no unescaping (no `\\`, no control
/// characters), as text, and what follows it.
fn plain_string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let body = bytes.strip_prefix(b"\"")?;
    let end = body
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if body[end] != b'"' {
        return None;
    }
    let text = std::str::from_utf8(&body[..end]).ok()?;
    Some((text, &body[end + 1..]))
}

/// A JSON unsigned integer at the start of `bytes` and what follows it: 1 to 19 digits (so it
/// always fits a `u64`) without a leading zero, as JSON writes them.
fn leading_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    let mut digits = 0;
    while let Some(&byte) = bytes.get(digits) {
        if !byte.is_ascii_digit() {
            break;
        }
        if digits == 19 || (digits == 1 && value == 0) {
            return None;
        }
        value = value * 10 + u64::from(byte - b'0');
        digits += 1;
    }
    (digits > 0).then(|| (value, &bytes[digits..]))
}

#[cfg(feature = "bincode")]
pub use self::binary::BincodeSerializer;

#[cfg(feature = "bincode")]
mod binary {
    use super::Serializer;
    use crate::{Error, SessionData, Values};
    use bincode::de::{BorrowDecode, BorrowDecoder, Decode};
    use bincode::enc::{Encode, Encoder};
    use bincode::error::{DecodeError, EncodeError};
    use serde_json::{Number, Value};

    /// A compact binary serializer on [bincode](https://docs.rs/bincode) 2.
    ///
    /// It round-trips every value a session can hold: null, booleans, every `i64`, `u64` and
    /// `f64`, strings, and arrays and objects nested to any depth up to
    /// [`MAX_DEPTH`](BincodeSerializer::MAX_DEPTH). Bytes that are not a record, or that nest
    /// deeper, decode as [`Error::Serialization`], never a panic or a stack overflow.
    ///
    /// This uses bincode 2.x: the 3.0.0 release on crates.io is an empty tombstone, and
    /// bincode is no longer maintained, so the format is pinned here by a version byte.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct BincodeSerializer;

    impl BincodeSerializer {
        /// How deeply arrays and objects may nest in a decoded record.
        pub const MAX_DEPTH: usize = 128;
        const FORMAT: u8 = 1;
    }

    const NULL: u8 = 0;
    const FALSE: u8 = 1;
    const TRUE: u8 = 2;
    const UINT: u8 = 3;
    const INT: u8 = 4;
    const FLOAT: u8 = 5;
    const STRING: u8 = 6;
    const ARRAY: u8 = 7;
    const OBJECT: u8 = 8;

    struct RecordRef<'a>(&'a SessionData);
    struct ValueRef<'a>(&'a Value);
    struct MapRef<'a>(&'a Values);

    impl Encode for RecordRef<'_> {
        fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
            BincodeSerializer::FORMAT.encode(e)?;
            self.0.created_unix().encode(e)?;
            self.0.last_access_unix().encode(e)?;
            MapRef(self.0.values()).encode(e)
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

    fn config() -> impl bincode::config::Config {
        bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
    }

    impl Serializer for BincodeSerializer {
        fn serialize(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
            bincode::encode_to_vec(RecordRef(data), config()).map_err(Error::encode)
        }

        fn deserialize(&self, bytes: &[u8]) -> Result<SessionData, Error> {
            let mut decoder = bincode::de::DecoderImpl::new(
                bincode::de::read::SliceReader::new(bytes),
                config(),
                (),
            );
            let d = &mut decoder;
            let format = u8::decode(d).map_err(Error::decode)?;
            if format != BincodeSerializer::FORMAT {
                return Err(Error::decode(format!(
                    "unknown bincode record format {format}"
                )));
            }
            let created = u64::decode(d).map_err(Error::decode)?;
            let accessed = u64::decode(d).map_err(Error::decode)?;
            let values = decode_map(d, 0).map_err(Error::decode)?;
            Ok(SessionData::from_parts(values, created, accessed))
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

    #[test]
    fn the_written_layout_decodes_as_serde_decodes_it() {
        let written = JsonSerializer.serialize(&sample()).unwrap();
        assert!(
            decode_written_layout(&written).is_some(),
            "the fast path takes what we write"
        );
        let mut inputs: Vec<Vec<u8>> = vec![written.clone()];
        for text in [
            r#"{"created":0,"accessed":0,"data":{}}"#,
            r#"{"created":1,"accessed":9999999999999999999,"data":{"n":1}}"#,
            r#"{"created":1,"accessed":18446744073709551615,"data":{"n":1}}"#,
            r#"{"created":1,"accessed":18446744073709551616,"data":{"n":1}}"#,
            r#"{"created":01,"accessed":2,"data":{}}"#,
            r#"{"created":-1,"accessed":2,"data":{}}"#,
            r#"{"created":1.5,"accessed":2,"data":{}}"#,
            r#"{"created":1e3,"accessed":2,"data":{}}"#,
            r#"{"created":1,"accessed":2,"data":{"a":1} }"#,
            r#"{"created":1,"accessed":2,"data":{"a":1}}}"#,
            r#"{"created":1,"accessed":2,"data":{"a":1}"#,
            r#"{"created":1,"accessed":2,"data":[1]}"#,
            r#"{"created":1,"accessed":2,"data":null}"#,
            r#"{"created":1,"accessed":2,"data":{"a":1},"x":1}"#,
            r#"{"created":1,"accessed":2,"data":{"a":1}} "#,
            r#"{"created":1,"accessed":2,"data":{"a":}}"#,
            r#"{"created":1,"accessed":2,"data":{"a":1,"a":2}}"#,
            r#"{"accessed":2,"created":1,"data":{"a":1}}"#,
            r#"{ "created":1,"accessed":2,"data":{"a":1}}"#,
            r#"{"created":1,"accessed":2,"data":{"a":"\u00e9\ud83d\udd11"}}"#,
            r#"{"created":1,"accessed":2,"data":{"a":"\ud800"}}"#,
            r#"{"created":,"accessed":2,"data":{}}"#,
            r#"{"created":1"#,
            "",
        ] {
            inputs.push(text.as_bytes().to_vec());
        }
        let record = |data: &str| format!(r#"{{"created":1,"accessed":2,"data":{data}}}"#);
        // Plain values, each shape on its own: the fast path takes them and gives serde's map.
        for data in [
            r#"{}"#,
            r#"{"a":true,"b":false,"c":null,"d":"x","e":0}"#,
            r#"{"":"","é🔑":"Zoë 🔑"}"#,
            "{\"a\":\"x\u{7f}y\"}",
            r#"{"a":9999999999999999999}"#,
            r#"{"a":"x","a":true,"a":3}"#,
        ] {
            let serde: Values = serde_json::from_str(data).unwrap();
            assert_eq!(flat_values(data.as_bytes()), Some(serde), "{data}");
            inputs.push(record(data).into_bytes());
        }
        // The shapes that leave the values to serde, each on its own.
        for data in [
            r#"{"a":"x\"y"}"#,
            r#"{"a":"x\ny"}"#,
            r#"{"b\u0041":1}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":-1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e2}"#,
            r#"{"a":01}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":99999999999999999999}"#,
            r#"{"a":[]}"#,
            r#"{"a":{}}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nulll}"#,
            r#"{"a" :1}"#,
            r#"{"a":1 }"#,
            r#"{ "a":1}"#,
            r#"{"a":"unterminated}"#,
            r#"{a:1}"#,
        ] {
            assert_eq!(flat_values(data.as_bytes()), None, "{data}");
            inputs.push(record(data).into_bytes());
        }
        // Invalid UTF-8 inside a key and inside a value.
        inputs.push(b"{\"created\":1,\"accessed\":2,\"data\":{\"a\xff\":1}}".to_vec());
        inputs.push(b"{\"created\":1,\"accessed\":2,\"data\":{\"a\":\"\xc3\"}}".to_vec());
        // Every cut and every one-byte change of a record of plain values too.
        let mut plain = SessionData::from_parts(Values::new(), 7, 8);
        for (key, value) in [
            ("n", json!(5)),
            ("s", json!("Zoë")),
            ("t", json!(true)),
            ("z", json!(null)),
        ] {
            plain.values_mut().insert(key.into(), value);
        }
        let plain = JsonSerializer.serialize(&plain).unwrap();
        let data = plain.windows(7).position(|w| w == b"\"data\":").unwrap() + 7;
        assert!(
            decode_written_layout(&plain).is_some()
                && flat_values(&plain[data..plain.len() - 1]).is_some(),
            "plain values take the fast path: {}",
            String::from_utf8_lossy(&plain)
        );
        for record in [&written, &plain] {
            for cut in 0..record.len() {
                inputs.push(record[..cut].to_vec());
            }
            for at in 0..record.len() {
                for byte in [
                    b'0', b'9', b' ', b'}', b'"', b',', b'\\', b't', b'n', 0x01, 0xff,
                ] {
                    let mut changed = record.clone();
                    changed[at] = byte;
                    inputs.push(changed);
                }
            }
        }
        for input in &inputs {
            // The serde-only decoding the fast path must agree with.
            let serde = decode_with_serde(input).ok();
            if let Some(fast) = decode_written_layout(input) {
                assert_eq!(
                    Some(fast),
                    serde,
                    "{:?}: the fast path disagrees with serde",
                    String::from_utf8_lossy(input)
                );
            }
            // Whatever path it takes, the serializer answers as serde does.
            assert_eq!(
                JsonSerializer.deserialize(input).ok(),
                serde,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
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
        let bytes = BincodeSerializer.serialize(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                BincodeSerializer.deserialize(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(BincodeSerializer.deserialize(&[9, 9, 9]).is_err());
        let mut deep = serde_json::Value::Null;
        for _ in 0..200 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let mut values = Values::new();
        values.insert("deep".into(), deep);
        let bytes = BincodeSerializer
            .serialize(&SessionData::from_parts(values, 1, 1))
            .unwrap();
        assert!(BincodeSerializer.deserialize(&bytes).is_err());
        // A huge claimed length must fail on the missing bytes, not allocate.
        let mut lying = vec![1u8, 0, 0, 1, 0, ARRAY_TAG_FOR_TEST];
        lying.extend_from_slice(&[251, 255, 255, 255, 255, 255, 255, 255, 127]);
        assert!(BincodeSerializer.deserialize(&lying).is_err());
    }

    #[cfg(feature = "bincode")]
    const ARRAY_TAG_FOR_TEST: u8 = 7;
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
