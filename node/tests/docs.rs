//! The README's reference sections match the code: the options of `reef node` (with their
//! defaults) and the metrics. `REEF_BLESS=1 cargo test -p reef-node --test docs` rewrites
//! them after a change.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::PathBuf;

use node::reference::{metrics_list, options, splice};

#[test]
fn the_readme_lists_every_option_with_its_default_and_every_metric() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let updated = splice(&readme, "options", &options()).expect("the options markers");
    let updated = splice(&updated, "metrics", &metrics_list()).expect("the metrics markers");
    if std::env::var_os("REEF_BLESS").is_some() {
        std::fs::write(&path, &updated).unwrap();
        return;
    }
    assert!(
        readme == updated,
        "README.md's generated sections are out of date: run `REEF_BLESS=1 cargo test -p reef-node --test docs`"
    );
}
