//! Host headers and origin URLs: routing never panics, and a routed CDN name's origin maps
//! back to a CDN name that routes to the same origin.
#![no_main]

use dns::ZoneSuffix;
use libfuzzer_sys::fuzz_target;
use proxy::route::{Route, Router, parse_origin};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(zone) = ZoneSuffix::parse("cdn") else {
        return;
    };
    let router = Router::new(zone, None);
    if let Ok(Route::Cdn(up)) = router.route(Some(text)) {
        let host = router.cdn_host(&up);
        assert_eq!(
            router.route(Some(&host)),
            Ok(Route::Cdn(up.clone())),
            "{text:?} -> {host}"
        );
        let _ = router.rewrite_location(text, &up);
    }
    let _ = parse_origin(text);
    let _ = node::cli::cdn_url(text, "cdn");
});
