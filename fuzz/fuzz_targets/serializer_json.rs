//! `JsonSerializer::deserialize` on arbitrary bytes: never a panic, and whatever decodes
//! round-trips (re-encodes, decodes to the same record, encodes to the same bytes). A record
//! JSON holds must also survive a move to `BincodeSerializer`. The serializer must answer
//! exactly as serde does on the whole record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use sessionkit_core::{
    BincodeSerializer, JsonSerializer, Lifetime, Serializer, SessionData, Values,
};
use std::time::Duration;

/// The record as serde alone decodes it.
#[derive(Deserialize)]
struct Envelope {
    created: u64,
    accessed: u64,
    #[serde(default)]
    lifetime: Option<OwnLifetime>,
    #[serde(default)]
    user: Option<String>,
    data: Values,
}

/// A session's own lifetime as the JSON format writes it.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OwnLifetime {
    BrowserSession,
    Until(u64),
    Inactivity(u64),
}

fuzz_target!(|data: &[u8]| {
    let by_serde = serde_json::from_slice::<Envelope>(data).ok().map(|e| {
        let mut record = SessionData::from_parts(e.data, e.created, e.accessed);
        record.set_lifetime(e.lifetime.map(|lifetime| match lifetime {
            OwnLifetime::BrowserSession => Lifetime::BrowserSession,
            OwnLifetime::Until(at) => Lifetime::Until(at),
            OwnLifetime::Inactivity(secs) => Lifetime::Inactivity(Duration::from_secs(secs)),
        }));
        record.set_user(e.user.map(Into::into));
        record
    });
    assert_eq!(
        JsonSerializer.deserialize(data).ok(),
        by_serde,
        "JsonSerializer and serde disagree on {:?}",
        String::from_utf8_lossy(data)
    );
    let Some(record) = sessionkit_fuzz::serializer_round_trip(&JsonSerializer, data) else {
        return;
    };
    let bytes = BincodeSerializer
        .serialize(&record)
        .expect("bincode encodes every record JSON decodes");
    let moved = BincodeSerializer
        .deserialize(&bytes)
        .expect("bincode decodes every record JSON decodes");
    assert!(
        sessionkit_fuzz::same_record(&moved, &record),
        "the record changed moving from JSON to bincode\n  JSON: {record:?}\nbincode: {moved:?}"
    );
});
