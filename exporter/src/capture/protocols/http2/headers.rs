//! HPACK decoding of one direction's header blocks (`httlib-hpack`, one decoder per connection and
//! direction), and the fields vigil labels with.
//!
//! A direction whose dynamic table may differ from its peer's (a header block lost or undecodable, a
//! connection adopted mid-way) is *unreliable* for the rest of the connection: each field of its blocks
//! that does not refer to the dynamic table (a static table entry, a literal with a static or literal
//! name) is then decoded on its own, and the others are skipped. A field is never read from a table
//! that may be wrong. (Splitting a block into fields is the one piece of HPACK written here: the crate
//! stops at the first field it cannot resolve, without saying where the next one starts.)

use httlib_hpack::Decoder;

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

/// The largest dynamic table a peer may ask for (`SETTINGS_HEADER_TABLE_SIZE` is the decoder's to
/// set, and vigil does not see which the peer agreed to): a bound on what a connection makes vigil hold.
/// The table starts at HPACK's 4 KiB, like the peer's.
const MAX_DYNAMIC_TABLE: u32 = 64 * 1024;

/// One direction's HPACK state.
pub struct HeaderDecoder {
    decoder: Decoder<'static>,
    reliable: bool,
    /// Decoded fields of the block being read (kept for their allocation).
    decoded: Vec<(Vec<u8>, Vec<u8>, u8)>,
}

/// A decoder with HPACK's initial table, accepting size updates up to [`MAX_DYNAMIC_TABLE`].
fn new_decoder() -> Decoder<'static> {
    let mut decoder = Decoder::default();
    decoder.set_max_dynamic_size(MAX_DYNAMIC_TABLE);
    decoder
}

impl HeaderDecoder {
    /// A direction whose state is known from its start (`reliable`), or one adopted mid-way.
    pub fn new(reliable: bool) -> Self {
        HeaderDecoder {
            decoder: new_decoder(),
            reliable,
            decoded: Vec::new(),
        }
    }

    /// The direction's state is no longer known (frames were lost): returns whether it was.
    pub fn lose(&mut self) -> bool {
        std::mem::replace(&mut self.reliable, false)
    }

    /// Decodes a header block (`None`: a block whose bytes were not all captured).
    pub fn decode(&mut self, block: Option<Vec<u8>>) -> (Fields, Decoding) {
        let mut fields = Fields::default();
        let Some(mut block) = block else {
            let decoding = match self.lose() {
                true => Decoding::JustLost,
                false => Decoding::Unreliable,
            };
            return (fields, decoding);
        };
        if !self.reliable {
            decode_without_table(&block, &mut fields);
            return (fields, Decoding::Unreliable);
        }
        self.decoded.clear();
        // httlib-hpack 0.1 indexes past the end of a block cut inside a field (a literal without its
        // value, an integer without its last byte) and panics: it is given the whole fields only, and
        // a cut block is a failure after them.
        let whole = whole_fields(&block);
        let cut = whole < block.len();
        block.truncate(whole);
        let result = self.decoder.decode(&mut block, &mut self.decoded);
        // The fields before a failure were read with the right state: they count.
        for (name, value, _) in &self.decoded {
            fields.add(name, value);
        }
        match result {
            Ok(_) if !cut => (fields, Decoding::Reliable),
            _ => {
                self.reliable = false;
                (fields, Decoding::JustLost)
            }
        }
    }
}

impl Fields {
    fn add(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b":method" => self.method = Some(known_method(value)),
            b":path" => {
                self.path = std::str::from_utf8(value)
                    .ok()
                    .filter(|path| is_plausible_path(path))
                    .map(str::to_owned)
            }
            b":status" => {
                self.status = std::str::from_utf8(value)
                    .ok()
                    .and_then(|status| status.parse().ok())
                    .filter(|status| (100..=999).contains(status))
            }
            b"content-type" => self.grpc = Some(value.starts_with(b"application/grpc")),
            b"grpc-status" => {
                self.grpc_status = std::str::from_utf8(value)
                    .ok()
                    .and_then(|status| status.parse().ok())
            }
            _ => {}
        }
    }
}

/// Entries of the HPACK static table (RFC 7541 Appendix A); indices past it are the dynamic table's.
const STATIC_TABLE_ENTRIES: u64 = 61;

/// Reads the fields of `block` that do not depend on the dynamic table, each decoded on its own.
fn decode_without_table(block: &[u8], fields: &mut Fields) {
    let mut rest = block;
    while !rest.is_empty() {
        let Some((length, independent)) = field_extent(rest) else {
            return;
        };
        if independent {
            let mut field = rest[..length].to_vec();
            let mut decoded = Vec::with_capacity(1);
            if new_decoder().decode(&mut field, &mut decoded).is_ok() {
                for (name, value, _) in &decoded {
                    fields.add(name, value);
                }
            }
        }
        rest = &rest[length..];
    }
}

/// The length of the run of whole field representations `block` starts with.
fn whole_fields(block: &[u8]) -> usize {
    let mut length = 0;
    while let Some((field, _)) = block.get(length..).and_then(field_extent) {
        length += field;
    }
    length
}

/// The length of the field representation `bytes` starts with, and whether it can be decoded without
/// the dynamic table (RFC 7541 §6); `None` if it is cut or malformed.
fn field_extent(bytes: &[u8]) -> Option<(usize, bool)> {
    let first = *bytes.first()?;
    let prefix_bits = match first {
        _ if first & 0x80 != 0 => 7, // indexed field
        _ if first & 0x40 != 0 => 6, // literal with incremental indexing
        _ if first & 0x20 != 0 => 5, // dynamic table size update
        _ => 4,                      // literal without indexing, or never indexed
    };
    let (index, mut length) = integer(bytes, prefix_bits)?;
    match prefix_bits {
        7 => return Some((length, (1..=STATIC_TABLE_ENTRIES).contains(&index))),
        5 => return Some((length, false)),
        _ => {}
    }
    if index == 0 {
        length += string_extent(bytes.get(length..)?)?;
    }
    length += string_extent(bytes.get(length..)?)?;
    (length <= bytes.len()).then_some((length, index <= STATIC_TABLE_ENTRIES))
}

/// An HPACK integer with a `prefix_bits`-bit prefix: its value and length.
fn integer(bytes: &[u8], prefix_bits: u32) -> Option<(u64, usize)> {
    let limit = (1u64 << prefix_bits) - 1;
    let mut value = u64::from(*bytes.first()?) & limit;
    if value < limit {
        return Some((value, 1));
    }
    for (position, &byte) in bytes.iter().enumerate().skip(1).take(8) {
        value += u64::from(byte & 0x7f) << (7 * (position - 1));
        if byte & 0x80 == 0 {
            return Some((value, position + 1));
        }
    }
    None
}

/// The length of the string literal `bytes` starts with (its length prefix included).
fn string_extent(bytes: &[u8]) -> Option<usize> {
    let (length, prefix) = integer(bytes, 7)?;
    usize::try_from(length).ok()?.checked_add(prefix)
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
            let (fields, decoding) = decoder.decode(Some(block));
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
        decoder.decode(Some(encoder.encode(&request("/shop.Cart/Add"))));
        // A block the decoder never sees: the encoder's table moves on.
        let _lost = encoder.encode(&request("/shop.Cart/Remove"));
        assert_eq!(decoder.decode(None).1, Decoding::JustLost);
        // The next block refers to both entries: never read from the decoder's stale table.
        let block = encoder.encode(&request("/shop.Cart/Remove"));
        let (fields, decoding) = decoder.decode(Some(block));
        assert_eq!(decoding, Decoding::Unreliable);
        assert_eq!(fields.method, Some("POST"), "a static table entry");
        assert_eq!(fields.path, None, "an entry of the lost state");
    }

    #[test]
    fn unreliable_blocks_read_every_field_that_does_not_need_the_table() {
        let mut encoder = IndexingEncoder::default();
        // The table fills with entries the decoder never sees.
        encoder.encode(&[(":path", "/shop.Cart/Get"), ("x-id", "7")]);
        let block = encoder.encode(&[
            (":path", "/shop.Cart/Get"),
            (":method", "POST"),
            ("x-id", "7"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
        ]);
        let (fields, decoding) = HeaderDecoder::new(false).decode(Some(block.clone()));
        assert_eq!(decoding, Decoding::Unreliable);
        assert_eq!(fields.path, None, "a dynamic reference, skipped");
        assert_eq!(fields.method, Some("POST"), "read past the skipped field");
        assert_eq!(fields.grpc, Some(true));
        assert_eq!(fields.grpc_status, Some(5));
        // Cut or malformed blocks end the reading, without a panic.
        for cut in 0..block.len() {
            HeaderDecoder::new(false).decode(Some(block[..cut].to_vec()));
        }
        HeaderDecoder::new(false).decode(Some(vec![
            0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]));
    }

    #[test]
    fn a_block_that_does_not_decode_makes_the_direction_unreliable() {
        let mut decoder = HeaderDecoder::new(true);
        // An indexed field past the (empty) dynamic table.
        let (_, decoding) = decoder.decode(Some(vec![0x80 | 70]));
        assert_eq!(decoding, Decoding::JustLost);
        let (fields, decoding) = decoder.decode(Some(vec![0x88]));
        assert_eq!((fields.status, decoding), (Some(200), Decoding::Unreliable));
    }

    #[test]
    fn a_block_cut_inside_a_field_is_lost_without_a_panic() {
        // Found by the `http2` fuzz target: httlib-hpack reads past the end of such blocks.
        for cut in [
            &[0x40, 0x01, b'a'][..], // a new name "a", its value missing
            &[0x41],                 // the name of static entry 1, its value missing
            &[0x0f],                 // an index whose continuation bytes are missing
            &[0xff],
            &[0x3f], // a table size update, cut the same way
        ] {
            let (fields, decoding) = HeaderDecoder::new(true).decode(Some(cut.to_vec()));
            assert_eq!(
                (fields, decoding),
                (Fields::default(), Decoding::JustLost),
                "{cut:x?}"
            );
        }
        // The fields before the cut were read with the right state: they count.
        let (fields, decoding) = HeaderDecoder::new(true).decode(Some(vec![0x83, 0x88, 0x41]));
        assert_eq!(decoding, Decoding::JustLost);
        assert_eq!((fields.method, fields.status), (Some("POST"), Some(200)));
    }

    #[test]
    fn implausible_paths_never_become_labels() {
        assert!(is_plausible_path("/pkg.Service/Method"));
        assert!(is_plausible_path("/users/42?x=%20y"));
        assert!(!is_plausible_path("users"));
        assert!(!is_plausible_path("/a b"));
        assert!(!is_plausible_path("/\u{fffd}"));
        let block = IndexingEncoder::default().encode(&[(":path", "/bad\x01path")]);
        let (fields, _) = HeaderDecoder::new(true).decode(Some(block));
        assert_eq!(fields.path, None);
    }
}
