//! `BincodeSerializer::deserialize` on arbitrary bytes: never a panic, and whatever decodes
//! round-trips (re-encodes, decodes to the same record, encodes to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessions_core::BincodeSerializer;

fuzz_target!(|data: &[u8]| {
    sessions_fuzz::serializer_round_trip(&BincodeSerializer, data);
});
