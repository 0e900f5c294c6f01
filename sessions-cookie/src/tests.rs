use super::*;
use sessionkit_core::conformance::Harness;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const OTHER: &[u8] = b"another secret that is long enough for a key!!";

/// Every backend of one case reads one manual clock, which the TTL cases advance.
struct CookieHarness(Mode, Clock);

impl CookieHarness {
    fn new(mode: Mode) -> Self {
        CookieHarness(mode, Clock::manual_from_now())
    }
}

impl Harness for CookieHarness {
    type Backend = CookieBackend;

    async fn backend(&self) -> CookieBackend {
        CookieBackend::builder(self.0, SECRET)
            .with_clock(self.1.clone())
            .build()
            .expect("the test secret is long enough")
    }

    async fn pass_time(&self, by: Duration) {
        self.1.advance(by);
    }
}

/// The conformance suite for a cookie backend, with the cases a cookie-carried session cannot
/// support and why: the one list of them.
macro_rules! cookie_conformance {
    ($mode:expr) => {
        sessionkit_core::conformance_tests!(CookieHarness::new($mode), skip: {
            Remove: "a cookie-carried session cannot be revoked on the server",
            NoResurrectionAfterRemove: "a cookie-carried session cannot be revoked on the server",
            UpdateKeepsId: "the cookie value is the sealed session: it changes with the data",
            CreateNeverOverwrites: "nothing is stored on the server to overwrite",
            LargeValue: "browsers keep at most 4096 bytes per cookie",
            ApplyKeepsOtherSavesKeys: "the client holds the state: there is no stored record for overlapping saves to merge into; the last cookie set wins",
            ApplyKeepsRemovedKeysRemoved: "the client holds the state: there is no stored record for overlapping saves to merge into; the last cookie set wins",
            ApplyAfterRemoveIsGone: "the client holds the state: a removal happens in the browser",
            ApplyClearClearsTheStoredRecord: "the client holds the state: there is no stored record for overlapping saves to merge into; the last cookie set wins",
            ApplyConcurrentSavesKeepEveryKey: "does not merge: the client holds the state, and the cookie set last wins",
            UserBindingStored: "the cookie value is the sealed session: a save's binding travels in the new value, not under the old one (tested by a_user_travels_in_the_seal)",
            CorruptRecordReadsAsMissing: "nothing is stored to corrupt: a value that does not open reads as no session",
            CorruptRecordFailsWhenStrict: "nothing is stored to corrupt: a value that does not open reads as no session",
            UnknownIdNotAdopted: "an update re-seals the data it is given: the old value identifies nothing",
            UserSessionsListed: "no index of sessions by user: nothing on the server knows them",
            EndedMarkerAfterRemove: "nothing is stored on the server: no marker can say a session ended",
            EndedMarkerAfterEmptyingSave: "nothing is stored on the server: no marker can say a session ended",
            EndedMarkerIsNoSession: "nothing is stored on the server: no marker can say a session ended",
            MoveAfterEndIsGone: "nothing is stored on the server: a removal happens in the browser",
            UserCapEndsTheLeastRecentlyUsed: "no index of sessions by user: nothing on the server can count them",
            UserCapCountsAMoveOnce: "no index of sessions by user: nothing on the server can count them",
            MoveEndsTheOldId: "the old value is a sealed session of its own: nothing on the server can end it before its deadline",
            UserRevokeAll: "no index of sessions by user: nothing on the server knows them",
            UserRevokeOthers: "no index of sessions by user: nothing on the server knows them",
            UserRevokeOne: "no index of sessions by user: nothing on the server knows them",
            UserRebindingMovesTheSession: "no index of sessions by user: nothing on the server knows them",
            UserExpiredSessionsPruned: "no index of sessions by user: nothing on the server knows them",
            UserRevokeRacingSavesStaysRevoked: "no index of sessions by user: nothing on the server knows them",
            LockExcludesOthers: "nothing is stored on the server: no lock can be kept there (a locked route refuses this backend when it is made)",
            LockLeaseRunsOut: "nothing is stored on the server: no lock can be kept there",
            LockedApplyIsFenced: "nothing is stored on the server: no lock can be kept there",
        });
    };
}

mod signed_conformance {
    use super::*;
    cookie_conformance!(Mode::Signed);
}

mod private_conformance {
    use super::*;
    cookie_conformance!(Mode::Private);
}

fn sample() -> SessionData {
    let mut data = SessionData::new(Values::new());
    data.values_mut().insert("user".into(), "alice".into());
    data
}

fn backends() -> [CookieBackend; 2] {
    [
        CookieBackend::signed(SECRET).unwrap(),
        CookieBackend::private(SECRET).unwrap(),
    ]
}

#[tokio::test]
async fn short_secrets_are_refused_with_advice() {
    let err = CookieBackend::signed(b"too short").unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert!(err.to_string().contains("openssl rand"), "{err}");
    assert!(CookieBackend::private([0; 31]).is_err());
    assert!(CookieBackend::private([0; 32]).is_ok());
    let old = CookieBackend::builder(Mode::Signed, SECRET)
        .with_old_key(b"short")
        .build()
        .unwrap_err();
    assert!(old.to_string().contains("openssl rand"), "{old}");
    // The first error is the one reported, whatever is set after it.
    let current = CookieBackend::builder(Mode::Private, b"short")
        .with_old_key(SECRET)
        .with_max_lifetime(None)
        .build()
        .unwrap_err();
    assert!(current.to_string().contains("is 5 bytes"), "{current}");
    assert!(
        CookieBackend::builder(Mode::Private, SECRET)
            .with_old_key(OTHER)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn generated_secrets_are_accepted_and_distinct() {
    let a = CookieBackend::generate_secret();
    let b = CookieBackend::generate_secret();
    assert_ne!(a, b);
    assert!(CookieBackend::private(a.as_bytes()).is_ok());
}

#[tokio::test]
async fn signed_values_are_readable_private_values_are_not() {
    let signed = CookieBackend::signed(SECRET).unwrap();
    let private = CookieBackend::private(SECRET).unwrap();
    let sv = signed.create(&sample(), None).await.unwrap();
    let pv = private.create(&sample(), None).await.unwrap();
    let readable = |v: &str| {
        let body = v.split('.').nth(1).unwrap();
        URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|payload| {
                let (_, values_at) = Header::read(&payload)?;
                String::from_utf8(payload.get(values_at..)?.to_vec()).ok()
            })
            .is_some_and(|json| json.contains("\"alice\""))
    };
    assert!(
        readable(&sv),
        "signed sessions carry their values as base64url JSON"
    );
    assert!(
        !pv.contains("alice") && !readable(&pv),
        "private sessions are encrypted"
    );
}

#[tokio::test]
async fn tampered_values_read_as_no_session() {
    for backend in backends() {
        let value = backend.create(&sample(), None).await.unwrap();
        let (id, sealed) = value.split_once('.').unwrap();
        let mut tampered = vec![
            String::new(),
            "not base64 at all!".to_owned(),
            value[..value.len() - 1].to_owned(),
            value[..value.len() / 2].to_owned(),
            format!("{value}A"),
            sealed.to_owned(),
            format!("XXXXXXXX.{sealed}"),
            format!("{id}."),
            format!("{id}.{}", "A".repeat(sealed.len())),
        ];
        // Flip each byte of the sealed part in turn.
        for i in (id.len() + 1)..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            tampered.push(String::from_utf8(bytes).unwrap());
        }
        for bad in &tampered {
            assert!(
                backend.read(bad).await.unwrap().is_none(),
                "{bad} read as a session"
            );
            assert!(backend.read(bad).await.unwrap().is_none());
        }
        assert!(backend.read(&value).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn swapped_signatures_do_not_verify() {
    let backend = CookieBackend::signed(SECRET).unwrap();
    let a = backend.create(&sample(), None).await.unwrap();
    let mut other = SessionData::default();
    other.values_mut().insert("user".into(), "mallory".into());
    let b = backend.create(&other, None).await.unwrap();
    let (signed_a, _) = a.rsplit_once('.').unwrap();
    let (_, tag_b) = b.rsplit_once('.').unwrap();
    let swapped = format!("{signed_a}.{tag_b}");
    assert!(backend.read(&swapped).await.unwrap().is_none());
}

#[tokio::test]
async fn values_of_one_mode_do_not_open_in_the_other() {
    let signed = CookieBackend::signed(SECRET).unwrap();
    let private = CookieBackend::private(SECRET).unwrap();
    let sv = signed.create(&sample(), None).await.unwrap();
    let pv = private.create(&sample(), None).await.unwrap();
    assert!(private.read(&sv).await.unwrap().is_none());
    assert!(signed.read(&pv).await.unwrap().is_none());
}

#[tokio::test]
async fn values_sealed_by_an_unknown_key_are_rejected() {
    for (ours, theirs) in [
        (CookieBackend::signed(SECRET), CookieBackend::signed(OTHER)),
        (
            CookieBackend::private(SECRET),
            CookieBackend::private(OTHER),
        ),
    ] {
        let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
        let forged = theirs.create(&sample(), None).await.unwrap();
        assert!(ours.read(&forged).await.unwrap().is_none());
        // Even with our key id pasted on, the seal does not open.
        let our_id = ours.keys[0].id.clone();
        let (_, sealed) = forged.split_once('.').unwrap();
        assert!(
            ours.read(&format!("{our_id}.{sealed}"))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn rotation_opens_old_cookies_and_reseals_under_the_new_key() {
    for mode in [Mode::Signed, Mode::Private] {
        let make = |secret: &[u8]| match mode {
            Mode::Signed => CookieBackend::signed(secret).unwrap(),
            Mode::Private => CookieBackend::private(secret).unwrap(),
        };
        let key1 = make(SECRET);
        let old_cookie = key1.create(&sample(), None).await.unwrap();

        let rotated = CookieBackend::builder(mode, OTHER)
            .with_old_key(SECRET)
            .build()
            .unwrap();
        assert!(
            rotated.read(&old_cookie).await.unwrap().is_some(),
            "old key must still open"
        );
        let resealed = rotated
            .apply(&old_cookie, &sample(), &Changes::default(), None)
            .await
            .unwrap()
            .expect("a session with values stays");
        let new_id = &rotated.keys[0].id;
        assert!(
            resealed.starts_with(&format!("{new_id}.")),
            "re-sealed under the new key"
        );
        assert!(
            key1.read(&resealed).await.unwrap().is_none(),
            "key 1 cannot open key 2's seal"
        );

        let key2_only = make(OTHER);
        assert!(
            key2_only.read(&old_cookie).await.unwrap().is_none(),
            "dropped key rejected"
        );
        assert!(key2_only.read(&resealed).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn deadline_is_enforced_on_the_server() {
    for mode in [Mode::Signed, Mode::Private] {
        let clock = Clock::manual_from_now();
        let backend = CookieBackend::builder(mode, SECRET)
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let value = backend
            .create(&sample(), Some(Duration::from_millis(300)))
            .await
            .unwrap();
        clock.advance(Duration::from_millis(299));
        assert!(backend.read(&value).await.unwrap().is_some());
        clock.advance(Duration::from_millis(1));
        assert!(
            backend.read(&value).await.unwrap().is_none(),
            "an expired copy still works"
        );
        assert!(backend.read(&value).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn no_ttl_uses_the_default_lifetime_not_forever() {
    let clock = Clock::manual_from_now();
    let backend = CookieBackend::builder(Mode::Signed, SECRET)
        .with_default_lifetime(Duration::from_millis(300))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let value = backend.create(&sample(), None).await.unwrap();
    assert!(backend.read(&value).await.unwrap().is_some());
    clock.advance(Duration::from_millis(300));
    assert!(backend.read(&value).await.unwrap().is_none());
}

#[tokio::test]
async fn oversized_sessions_are_refused_not_truncated() {
    for backend in backends() {
        let mut data = SessionData::default();
        data.values_mut()
            .insert("big".into(), "x".repeat(5000).into());
        match backend.create(&data, None).await {
            Err(Error::CookieTooLarge { size, limit }) => {
                assert!(size > limit);
                assert_eq!(limit, MAX_COOKIE_BYTES);
            }
            other => panic!("expected CookieTooLarge, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn metadata_survives_the_round_trip() {
    for backend in backends() {
        let now = sessionkit_core::Clock::system().unix_secs();
        let data = SessionData::from_parts(sample().into_values(), now - 100, now - 50);
        let value = backend.create(&data, None).await.unwrap();
        assert_eq!(backend.read(&value).await.unwrap(), Some(data));
    }
}

#[tokio::test]
async fn value_under_another_name_is_rejected() {
    for backend in backends() {
        let user = CookieBackend::builder(backend.mode(), SECRET)
            .with_cookie_name("user")
            .build()
            .unwrap();
        let admin = backend.bound_to("admin");
        let value = user.create(&sample(), None).await.unwrap();
        assert!(
            user.read(&value).await.unwrap().is_some(),
            "opens under its own name"
        );
        assert_eq!(
            admin.read(&value).await.unwrap(),
            None,
            "{:?}: a value sealed as `user` opened as `admin`",
            admin.mode()
        );
    }
}

#[tokio::test]
async fn binding_a_cookie_name_rebinds_the_values_sealed_after_it() {
    for backend in backends() {
        let mut bound = backend.clone();
        bound.bind_to_layer("admin", None, &Clock::system());
        assert_eq!(bound.cookie_name(), "admin");
        let value = bound.create(&sample(), None).await.unwrap();
        assert!(
            backend
                .bound_to("admin")
                .read(&value)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            backend.read(&value).await.unwrap(),
            None,
            "default name: `session`"
        );
        assert_eq!(backend.cookie_name(), DEFAULT_COOKIE_NAME);
    }
}

#[tokio::test]
async fn values_of_an_earlier_format_name_an_unknown_key() {
    // The key id of the format before names were bound: SHA-256 of the old label and the
    // master key, first six bytes. No key of this format carries it.
    for backend in backends() {
        let key = Key::derive_from(SECRET);
        let old_id = URL_SAFE_NO_PAD.encode(
            &Sha256::new()
                .chain_update(b"sessions-cookie key id\0")
                .chain_update(key.master())
                .finalize()[..6],
        );
        let value = backend.create(&sample(), None).await.unwrap();
        let (id, rest) = value.split_once('.').unwrap();
        assert_ne!(id, old_id);
        assert_eq!(
            backend.read(&format!("{old_id}.{rest}")).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn a_session_ends_at_the_absolute_limit_however_long_its_seal() {
    let day = 24 * 60 * 60;
    let now = sessionkit_core::Clock::system().unix_secs();
    let created_days_ago = |days: u64| {
        let mut data = sample();
        data.set_created(now - days * day);
        data
    };
    let fortnight = Some(Duration::from_secs(14 * day));
    for backend in backends() {
        // Past the 30-day default: a fresh seal with a long TTL does not open.
        let old = backend
            .create(&created_days_ago(31), fortnight)
            .await
            .unwrap();
        assert_eq!(
            backend.read(&old).await.unwrap(),
            None,
            "{:?}",
            backend.mode()
        );
        // Within it: it opens, and its deadline stops at the limit, not 14 days on.
        let young = backend
            .create(&created_days_ago(29), fortnight)
            .await
            .unwrap();
        assert!(backend.read(&young).await.unwrap().is_some());
        // No limit: the old session opens.
        let unlimited = CookieBackend::builder(backend.mode(), SECRET)
            .with_max_lifetime(None)
            .build()
            .unwrap();
        let old = unlimited
            .create(&created_days_ago(31), fortnight)
            .await
            .unwrap();
        assert!(unlimited.read(&old).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_sessions_own_lifetime_travels_in_the_seal() {
    for backend in backends() {
        for lifetime in [
            Lifetime::BrowserSession,
            Lifetime::Until(sessionkit_core::Clock::system().unix_secs() + 3_600),
            Lifetime::Inactivity(Duration::from_secs(30 * 86_400)),
        ] {
            let mut data = sample();
            data.set_lifetime(Some(lifetime));
            let value = backend.create(&data, None).await.unwrap();
            let read = backend.read(&value).await.unwrap().unwrap();
            assert_eq!(read.lifetime(), Some(lifetime), "{:?}", backend.mode());
        }
    }
}

#[tokio::test]
async fn a_user_travels_in_the_seal_and_unbound_values_keep_their_format() {
    for backend in backends() {
        let unbound = backend.create(&sample(), None).await.unwrap();
        for user in [
            "42",
            "zoë@example.com",
            &"u".repeat(sessionkit_core::MAX_USER_LEN),
        ] {
            let mut data = sample();
            data.set_user(Some(user.into()));
            let value = backend.create(&data, None).await.unwrap();
            let read = backend.read(&value).await.unwrap().expect("opens");
            assert_eq!(read.user(), Some(user));
            assert_eq!(read.values(), data.values());
            // The user costs its length and one byte, sealed.
            assert!(value.len() > unbound.len() + user.len());
        }
        assert_eq!(backend.read(&unbound).await.unwrap().unwrap().user(), None);
        let mut data = sample();
        data.set_user(Some("u".repeat(sessionkit_core::MAX_USER_LEN + 1).into()));
        assert!(matches!(
            backend.create(&data, None).await,
            Err(Error::InvalidUser { len: 256 })
        ));
        // Listing and revoking need a server-side index: a clear refusal, not an empty list.
        assert!(matches!(
            backend.user_sessions("42").await,
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            backend.revoke_user_sessions("42", None).await,
            Err(Error::Unsupported(_))
        ));
    }
}

/// `payload` sealed by `backend` under its current key, as it seals its own payloads.
fn seal_payload(backend: &CookieBackend, payload: &[u8]) -> String {
    let mut buf = vec![0; backend.payload_at()];
    buf.extend_from_slice(payload);
    backend.seal(buf).unwrap()
}

/// The payload inside `value`, sealed by `backend`.
fn payload_of(backend: &CookieBackend, value: &str) -> Vec<u8> {
    let (buf, at) = backend.open(value).expect("the value opens");
    buf[at..].to_vec()
}

/// A header as [`CookieBackend::encode`] writes it, alive for a minute, with neither lifetime
/// nor user: its last two bytes are those two `None`s.
fn header_bytes() -> Vec<u8> {
    let now = Clock::system().unix_millis();
    let header = Header {
        format: FORMAT,
        issued_ms: now,
        expires_ms: now + 60_000,
        created: now / 1000,
        accessed: now / 1000,
        lifetime: None,
        user: None,
    };
    bincode::encode_to_vec(header, bincode::config::standard()).unwrap()
}

#[tokio::test]
async fn the_header_is_one_bincode_struct_and_small() {
    for backend in backends() {
        let value = backend.create(&sample(), None).await.unwrap();
        let payload = payload_of(&backend, &value);
        let (header, values_at) = Header::read(&payload).expect("a header");
        // Format 1; issue time and deadline in milliseconds are past `u32::MAX` (9 bytes
        // each), creation and last access in seconds are not (5 bytes each); no lifetime, no
        // user (a byte each).
        assert_eq!(payload[0], FORMAT);
        assert_eq!(values_at, 1 + 9 + 9 + 5 + 5 + 1 + 1);
        assert_eq!(&payload[values_at..], br#"{"user":"alice"}"#);
        assert!(header.expires_ms > header.issued_ms);
        assert_eq!((header.lifetime.is_none(), header.user), (true, None));
        // A lifetime costs its variant and its number, a user its length and its bytes.
        let mut data = sample();
        data.set_lifetime(Some(Lifetime::Inactivity(Duration::from_secs(60))));
        data.set_user(Some("42".into()));
        let value = backend.create(&data, None).await.unwrap();
        let payload = payload_of(&backend, &value);
        let (_, bound_at) = Header::read(&payload).expect("a header");
        assert_eq!(bound_at, values_at + 2 + 3);
        assert_eq!(
            &payload[bound_at - 7..bound_at],
            &[1, 2, 60, 1, 2, b'4', b'2']
        );
    }
}

#[tokio::test]
async fn an_authentic_payload_without_a_header_of_this_format_is_no_session() {
    for backend in backends() {
        let header = header_bytes();
        let prefix = &header[..header.len() - 2];
        let with_tail = |tail: &[u8]| {
            let mut payload = prefix.to_vec();
            payload.extend_from_slice(tail);
            payload.extend_from_slice(b"{}");
            payload
        };
        // What this backend writes opens: the cases below fail on their difference alone.
        let longest_user = [&[0, 1, 251, 255, 0][..], &[b'u'; 255]].concat();
        for tail in [&[0, 0][..], &[1, 2, 60, 0], &longest_user] {
            let valid = seal_payload(&backend, &with_tail(tail));
            assert!(backend.read(&valid).await.unwrap().is_some(), "{tail:?}");
        }
        let mut bad: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"{}".to_vec(),
            // An `Option` byte that is neither 0 nor 1, a lifetime variant that does not
            // exist, and an amount missing.
            with_tail(&[2, 0]),
            with_tail(&[1, 3, 0, 0]),
            with_tail(&[1, 1]),
            // Users never written: empty, not UTF-8, longer than any user, claiming more
            // bytes than there are.
            with_tail(&[0, 1, 0]),
            with_tail(&[0, 1, 2, 0xff, 0xfe]),
            with_tail(&[&[0, 1, 251, 0, 1][..], &[b'u'; 256]].concat()),
            with_tail(&[0, 1, 253, 255, 255, 255, 255, 255, 255, 255, 127]),
            // A varint marker for a `u128`, where a `u64` goes.
            [&[FORMAT, 254][..], &[0; 16], &header[2..]].concat(),
            // The header alone, then values that are not JSON or not an object.
            header.clone(),
            [&header[..], b"[1]"].concat(),
            [&header[..], b"{"].concat(),
        ];
        // Another format byte, and every truncation of the header.
        for format in [0, 2, 255] {
            let mut other = with_tail(&[0, 0]);
            other[0] = format;
            bad.push(other);
        }
        for cut in 0..header.len() {
            bad.push(header[..cut].to_vec());
        }
        for payload in bad {
            let value = seal_payload(&backend, &payload);
            assert_eq!(
                backend.read(&value).await.unwrap(),
                None,
                "{:?}: {payload:?} opened",
                backend.mode()
            );
        }
    }
}
