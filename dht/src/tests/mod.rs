//! Scenario tests on a small network of real nodes in virtual time (see `net.rs`).

mod machine;
mod net;
mod scenarios;
