//! What publishers send and serve: purge messages (from any client or node) and
//! `/.well-known/reef.json` documents (from any origin). Never a panic; a purge that decodes
//! re-encodes to the same purge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::purge::message::Purge;
use proxy::site::SitePolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Purge::decode(data) {
        assert_eq!(Purge::decode(&p.encode()).ok(), Some(p.clone()));
        let _ = p.signature_valid();
        if let Ok(t) = p.target() {
            assert!(t.matches(&t.key));
        }
    }
    let _ = SitePolicy::parse(data);
});
