//! Bugs the fuzz targets in `fuzz/` found (`scripts/fuzz`), one test each, named for the bug.

use sessionkit_core::{JsonSerializer, Serializer, SessionData, Values};

/// `fuzz/` target `serializer_json`: an integer too large for `u64` decodes as the nearest
/// `f64` (9.844674407470955e19), which encodes as `9.844674407470955e+19`, which decodes as
/// 9.844674407470957e19: serde_json parses floats without its `float_roundtrip` feature, so a
/// float a handler stored can come back changed in its last bits.
#[test]
fn json_serializer_float_drifts_through_a_round_trip() {
    // The fuzzer's input, verbatim.
    let input = r#"{"created":1700000000,"accessed":1700000100,"data":{"ncreaoedestVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVed":{"a":[0,-2,3.25,null,true,"é"],"b":{"c":{}},"big":98446744074709551615},"[user":"fuzz"}}"#;
    let decoded = JsonSerializer.deserialize(input.as_bytes()).unwrap();
    let again = JsonSerializer
        .deserialize(&JsonSerializer.serialize(&decoded).unwrap())
        .unwrap();
    assert_eq!(again, decoded, "decode, encode, decode changed the record");

    // The same bug without the fuzzer: a float a handler could store.
    let mut values = Values::new();
    values.insert("f".into(), serde_json::json!(9.844674407470955e19_f64));
    let data = SessionData::from_parts(values, 1, 2);
    let bytes = JsonSerializer.serialize(&data).unwrap();
    assert_eq!(JsonSerializer.deserialize(&bytes).unwrap(), data);
}
