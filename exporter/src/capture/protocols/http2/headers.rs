//! HPACK decoding of one direction's header blocks (`loona-hpack`, one decoder per connection and
//! direction), and the fields vigil labels with.
//!
//! A direction whose dynamic table may differ from its peer's (a header block lost or undecodable, a
//! connection adopted mid-way) is *unreliable* for the rest of the connection: each of its blocks is
//! then decoded with an empty dynamic table, so that only fields that do not refer to the lost state
//! (static table entries, literals, entries the same block added) are read, and a field that does
//! stops the decoding there. A field is never read from a table that may be wrong.

use std::borrow::Cow;

use loona_hpack::Decoder;

use super::super::known_method;

/// The fields of a header block that vigil uses; `None` where absent or not read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub method: Option<&'static str>,
    /// `:path`, when it is a plausible path ([`is_plausible_path`]).
    pub path: Option<String>,
    pub status: Option<u16>,
    /// Whether `content-type` is gRPC's (`application/grpc`, `application/grpc+proto`, …).
    pub grpc: Option<bool>,
    /// `grpc-status`, as the status code.
    pub grpc_status: Option<u8>,
}

/// What decoding a block told of the direction.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoding {
    /// Read with the direction's state.
    Reliable,
    /// The block, or one before it, was lost or could not be decoded: the fields read are right, some
    /// may be missing.
    Unreliable,
    /// This block made the direction unreliable (a desync to count).
    JustLost,
}

/// One direction's HPACK state.
pub struct HeaderDecoder {
    decoder: Decoder<'static>,
    reliable: bool,
}

impl HeaderDecoder {
    /// A direction whose state is known from its start (`reliable`), or one adopted mid-way.
    pub fn new(reliable: bool) -> Self {
        HeaderDecoder {
            decoder: Decoder::new(),
            reliable,
        }
    }

    /// The direction's state is no longer known (frames were lost): returns whether it was.
    pub fn lose(&mut self) -> bool {
        std::mem::replace(&mut self.reliable, false)
    }

    /// Decodes a header block (`None`: a block whose bytes were not all captured).
    pub fn decode(&mut self, block: Option<&[u8]>) -> (Fields, Decoding) {
        let mut fields = Fields::default();
        let Some(block) = block else {
            let decoding = match self.lose() {
                true => Decoding::JustLost,
                false => Decoding::Unreliable,
            };
            return (fields, decoding);
        };
        if !self.reliable {
            // Only what does not depend on the lost table: a fresh, empty one.
            let _ = Decoder::new().decode_with_cb(block, |name, value| fields.add(&name, value));
            return (fields, Decoding::Unreliable);
        }
        match self
            .decoder
            .decode_with_cb(block, |name, value| fields.add(&name, value))
        {
            Ok(()) => (fields, Decoding::Reliable),
            Err(_) => {
                self.reliable = false;
                (fields, Decoding::JustLost)
            }
        }
    }
}

impl Fields {
    fn add(&mut self, name: &[u8], value: Cow<[u8]>) {
        match name {
            b":method" => self.method = Some(known_method(&value)),
            b":path" => {
                self.path = std::str::from_utf8(&value)
                    .ok()
                    .filter(|path| is_plausible_path(path))
                    .map(str::to_owned)
            }
            b":status" => {
                self.status = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|status| status.parse().ok())
                    .filter(|status| (100..=999).contains(status))
            }
            b"content-type" => self.grpc = Some(value.starts_with(b"application/grpc")),
            b"grpc-status" => {
                self.grpc_status = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|status| status.parse().ok())
            }
            _ => {}
        }
    }
}

/// Whether a decoded `:path` may become a label: `/`, then letters, digits and `-/._~` only, before an
/// optional query (OBI's rule; bytes decoded from a wrong table rarely pass it).
pub fn is_plausible_path(path: &str) -> bool {
    let before_query = path.split('?').next().unwrap_or(path);
    before_query.starts_with('/')
        && before_query
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-/._~".contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::{super::hpack_encoder::IndexingEncoder, *};

    fn request(path: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    }

    #[test]
    fn blocks_decode_with_the_state_of_the_blocks_before() {
        let mut encoder = IndexingEncoder::default();
        let mut decoder = HeaderDecoder::new(true);
        for _ in 0..3 {
            let block = encoder.encode(&request("/shop.Cart/Add"));
            let (fields, decoding) = decoder.decode(Some(&block));
            assert_eq!(decoding, Decoding::Reliable);
            assert_eq!(fields.method, Some("POST"));
            assert_eq!(fields.path.as_deref(), Some("/shop.Cart/Add"));
            assert_eq!(fields.grpc, Some(true));
        }
    }

    #[test]
    fn after_a_lost_block_only_fields_independent_of_the_table_are_read() {
        let mut encoder = IndexingEncoder::default();
        let mut decoder = HeaderDecoder::new(true);
        decoder.decode(Some(&encoder.encode(&request("/shop.Cart/Add"))));
        // A block the decoder never sees: the encoder's table moves on.
        let _lost = encoder.encode(&request("/shop.Cart/Remove"));
        assert_eq!(decoder.decode(None).1, Decoding::JustLost);
        // The next block refers to both entries: never read from the decoder's stale table.
        let block = encoder.encode(&request("/shop.Cart/Remove"));
        let (fields, decoding) = decoder.decode(Some(&block));
        assert_eq!(decoding, Decoding::Unreliable);
        assert_eq!(fields.method, Some("POST"), "a static table entry");
        assert_eq!(fields.path, None, "an entry of the lost state");
    }

    #[test]
    fn a_block_that_does_not_decode_makes_the_direction_unreliable() {
        let mut decoder = HeaderDecoder::new(true);
        // An indexed field past the (empty) dynamic table.
        let (_, decoding) = decoder.decode(Some(&[0x80 | 70]));
        assert_eq!(decoding, Decoding::JustLost);
        let (fields, decoding) = decoder.decode(Some(&[0x88]));
        assert_eq!((fields.status, decoding), (Some(200), Decoding::Unreliable));
    }

    #[test]
    fn implausible_paths_never_become_labels() {
        assert!(is_plausible_path("/pkg.Service/Method"));
        assert!(is_plausible_path("/users/42?x=%20y"));
        assert!(!is_plausible_path("users"));
        assert!(!is_plausible_path("/a b"));
        assert!(!is_plausible_path("/\u{fffd}"));
        let block = IndexingEncoder::default().encode(&[(":path", "/bad\x01path")]);
        let (fields, _) = HeaderDecoder::new(true).decode(Some(&block));
        assert_eq!(fields.path, None);
    }
}
