//! `JsonSerializer::deserialize` on arbitrary bytes: never a panic, and whatever decodes
//! round-trips (re-encodes, decodes to the same record, encodes to the same bytes). A record
//! JSON holds must also survive a move to `BincodeSerializer`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessions_core::{BincodeSerializer, JsonSerializer, Serializer};

fuzz_target!(|data: &[u8]| {
    let Some(record) = sessions_fuzz::serializer_round_trip(&JsonSerializer, data) else {
        return;
    };
    let bytes = BincodeSerializer
        .serialize(&record)
        .expect("bincode encodes every record JSON decodes");
    let moved = BincodeSerializer
        .deserialize(&bytes)
        .expect("bincode decodes every record JSON decodes");
    assert!(
        sessions_fuzz::same_record(&moved, &record),
        "the record changed moving from JSON to bincode\n  JSON: {record:?}\nbincode: {moved:?}"
    );
});
