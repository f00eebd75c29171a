//! Decoding a list without trusting its announced length for the allocation.
//!
//! postcard writes a sequence's length first, and serde's `Vec` reserves room for it before
//! reading any element (capped at 1 MiB). A message of a few bytes announcing four billion
//! contacts made the decoder reserve that mebibyte, only to fail on the missing bytes. Here
//! the room reserved up front is capped at the wire limit of the list; a longer list still
//! decodes, from real bytes only, and the message's check rejects it with a typed error.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

/// A sequence as a `Vec`, reserving at most `cap` elements before they arrive.
pub(crate) fn vec<'de, D, T>(d: D, cap: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Capped<T> {
        cap: usize,
        item: PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Capped<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.cap));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Capped {
        cap,
        item: PhantomData,
    })
}

#[cfg(test)]
mod tests {
    use serde::de::value::{Error, SeqDeserializer};

    /// Two bytes that claim to be a billion.
    struct Lying(u8);

    impl Iterator for Lying {
        type Item = u8;
        fn next(&mut self) -> Option<u8> {
            self.0 = self.0.checked_sub(1)?;
            Some(self.0)
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (1 << 30, Some(1 << 30))
        }
    }

    #[test]
    fn an_announced_length_reserves_no_more_than_the_cap() {
        let d = SeqDeserializer::<_, Error>::new(Lying(2));
        let got: Vec<u8> = super::vec(d, 64).expect("two elements");
        assert_eq!(got, vec![1, 0]);
        assert!(got.capacity() <= 64, "reserved {}", got.capacity());
    }

    #[test]
    fn a_list_longer_than_the_cap_still_decodes_from_its_bytes() {
        let d = SeqDeserializer::<_, Error>::new(0u8..100);
        let got: Vec<u8> = super::vec(d, 8).expect("all elements");
        assert_eq!(got.len(), 100);
    }
}
