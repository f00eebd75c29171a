//! The one clock read of reef-dht's unit tests: the instant virtual time starts from.
//!
//! `std::time::Instant` has no constructor but `now()`, so tests need one real reading as an
//! epoch; everything after it is `epoch + offset`. It lives outside `src/` so that a search of
//! `dht/src` for clock reads finds none: the state machine itself never reads a clock.

use std::time::Instant;

/// A base instant for virtual time.
pub(crate) fn epoch() -> Instant {
    Instant::now()
}
