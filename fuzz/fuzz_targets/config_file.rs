//! `reef node --config FILE`: any file turns into command-line words or a clear error.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options: Vec<String> = [
        "http",
        "zone",
        "cache-mem",
        "bootstrap",
        "access-log",
        "resolve",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _ = node::config_file::to_args(Path::new("fuzz.toml"), text, &options, |_| false);
});
