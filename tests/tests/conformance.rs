//! The conformance suite for every backend of this workspace that needs no server.

use sessionkit_cookie::{CookieBackend, Mode};
use sessionkit_core::IdGenerator;
use sessionkit_core::conformance::{Case, Harness};
use sessionkit_memory::InMemoryBackend;

struct Memory;

impl Harness for Memory {
    type Backend = InMemoryBackend;
    async fn backend(&self) -> InMemoryBackend {
        InMemoryBackend::new().with_max_sessions(10_000)
    }
    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<InMemoryBackend> {
        Some(InMemoryBackend::new().with_id_generator(ids))
    }
    fn merges_atomically(&self) -> bool {
        true
    }
}

mod memory {
    sessionkit_core::conformance_tests!(super::Memory);
}

struct Cookie(Mode);

const SECRET: &[u8] = b"conformance secret for the cookie backend, 48 bytes";

impl Harness for Cookie {
    type Backend = CookieBackend;
    async fn backend(&self) -> CookieBackend {
        match self.0 {
            Mode::Signed => CookieBackend::signed(SECRET),
            Mode::Private => CookieBackend::private(SECRET),
        }
        .expect("a long enough secret")
    }
    fn skip(&self, case: Case) -> Option<&'static str> {
        match case {
            Case::Remove | Case::NoResurrectionAfterRemove => {
                Some("a cookie-carried session cannot be revoked on the server")
            }
            Case::UpdateKeepsId => Some("the cookie value is the sealed session itself"),
            Case::CreateNeverOverwrites => Some("nothing is stored on the server to overwrite"),
            Case::LargeValue => Some("browsers keep at most 4096 bytes per cookie"),
            Case::ApplyKeepsOtherSavesKeys
            | Case::ApplyKeepsRemovedKeysRemoved
            | Case::ApplyAfterRemoveIsGone
            | Case::ApplyClearClearsTheStoredRecord
            | Case::ApplyConcurrentSavesKeepEveryKey => Some(
                "the client holds the state: there is no stored record for overlapping saves \
                 to merge into; the last cookie set wins",
            ),
            Case::CorruptRecordReadsAsMissing | Case::CorruptRecordFailsWhenStrict => {
                Some("nothing is stored to corrupt: a value that does not open reads as no session")
            }
            Case::UserBindingStored => Some(
                "the cookie value is the sealed session: a save's binding travels in the new \
                 value, not under the old one (sessionkit-cookie tests it)",
            ),
            Case::UnknownIdNotAdopted => {
                Some("an update re-seals the data it is given: the old value identifies nothing")
            }
            _ => None,
        }
    }
}

mod cookie_signed {
    sessionkit_core::conformance_tests!(super::Cookie(sessionkit_cookie::Mode::Signed));
}

mod cookie_private {
    sessionkit_core::conformance_tests!(super::Cookie(sessionkit_cookie::Mode::Private));
}
