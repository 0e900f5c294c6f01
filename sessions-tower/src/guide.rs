//! The guide: how-tos and reference chapters beyond the [crate docs](crate).
//!
//! The README tours the features; these chapters hold the details. Every sample in them is
//! compiled and run as a doctest of this crate (the samples that need a Redis or PostgreSQL
//! server are compiled only), and asserts what it shows in its hidden lines, which drive the
//! app with [`testing::TestClient`](crate::testing::TestClient).
//!
//! | chapter | what it covers |
//! |---|---|
//! | [`recipes`] | a current-user extractor, flash messages, a login check as middleware, work after the response, testing |
//! | [`cookies`] | the cookie's path and domain, cookies that end with the browser |
//! | [`backends`] | the default backend, choosing one (also at run time), memory, cookie, Redis, SQL, serializers, your own backend |
//! | [`login`] | a fresh session id at login, ending a session at logout |
//! | [`devices`] | a user's sessions: list them, sign out of other devices |
//! | [`remember_me`] | a session's own lifetime |
//! | [`probation`] | sessions nobody comes back to |
//! | [`limits`] | idle and absolute time limits, hardening the cookie |
//! | [`overlapping`] | what a save keeps when requests of one session overlap |
//!
//! The modules hold no items: they exist for their documentation.

#[doc = include_str!("guide/recipes.md")]
pub mod recipes {}

#[doc = include_str!("guide/cookies.md")]
pub mod cookies {}

#[doc = include_str!("guide/backends.md")]
pub mod backends {}

#[doc = include_str!("guide/login.md")]
pub mod login {}

#[doc = include_str!("guide/devices.md")]
pub mod devices {}

#[doc = include_str!("guide/remember_me.md")]
pub mod remember_me {}

#[doc = include_str!("guide/probation.md")]
pub mod probation {}

#[doc = include_str!("guide/limits.md")]
pub mod limits {}

#[doc = include_str!("guide/overlapping.md")]
pub mod overlapping {}
