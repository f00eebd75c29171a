//! Disk-cache entries as read back from disk (a damaged or hostile file): never a panic,
//! and an entry that decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::disk::{decode_entry, encode_entry};

fuzz_target!(|data: &[u8]| {
    if let Ok((key, stored)) = decode_entry(data) {
        let body = stored
            .body
            .collect()
            .expect("a decoded entry has its whole body");
        let again = encode_entry(&key, &stored, &body);
        let (key2, stored2) = decode_entry(&again).expect("a re-encoded entry decodes");
        assert_eq!(key, key2);
        assert_eq!(stored.status, stored2.status);
        assert_eq!(stored2.body.collect(), Some(body));
    }
});
