//! Lowercase hex, for node IDs, trace IDs and secret files.

/// `bytes` as lowercase hex digits.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `2 * N` hex digits as `N` bytes; `None` for anything else.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        assert_eq!(encode(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(decode::<3>("00ab10"), Some([0, 0xab, 0x10]));
        assert_eq!(decode::<3>("00ab1"), None);
        assert_eq!(decode::<2>("00ab10"), None);
        assert_eq!(decode::<1>("zz"), None);
        assert_eq!(decode::<1>("é"), None);
    }
}
