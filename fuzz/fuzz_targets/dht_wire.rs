//! DHT messages from the network: decoding never panics, and what decodes re-encodes to
//! something that decodes to the same message.
#![no_main]

use dht::wire::{decode_request, decode_response, encode_request, encode_response};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request(data, MAX) {
        let again = encode_request(&req, MAX).expect("a decoded request encodes");
        assert_eq!(decode_request(&again, MAX).ok(), Some(req));
    }
    if let Ok(resp) = decode_response(data, MAX) {
        let again = encode_response(&resp, MAX).expect("a decoded response encodes");
        assert_eq!(decode_response(&again, MAX).ok(), Some(resp));
    }
});
