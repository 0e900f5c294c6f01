//! `BincodeSerializer::deserialize` on arbitrary bytes: never a panic, and whatever decodes
//! round-trips (re-encodes, decodes to the same record, encodes to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit_core::BincodeSerializer;

fuzz_target!(|data: &[u8]| {
    sessionkit_fuzz::serializer_round_trip(&BincodeSerializer, data);
});
