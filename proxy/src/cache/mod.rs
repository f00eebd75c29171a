//! RFC 9111 caching decisions, as pure functions of headers and `now`. The store and the
//! fetch path that use them come next.

pub mod conditional;
pub mod control;
pub mod freshness;
