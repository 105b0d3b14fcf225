//! An HPACK encoder for tests that indexes like real HTTP/2 stacks (nghttp2, gRPC's chttp2): every
//! field not in a table is added to the dynamic table, `:path` values included, so that later blocks
//! refer to state a decoder can lose, and what it writes is decided by the table alone (the HPACK
//! crates' encoders leave indexing to each call's flags).

/// The static table entries the tests use (RFC 7541 Appendix A), with their indices.
const STATIC: [(usize, &str, &str); 12] = [
    (1, ":authority", ""),
    (2, ":method", "GET"),
    (3, ":method", "POST"),
    (4, ":path", "/"),
    (6, ":scheme", "http"),
    (8, ":status", "200"),
    (9, ":status", "204"),
    (12, ":status", "400"),
    (13, ":status", "404"),
    (14, ":status", "500"),
    (31, "content-type", ""),
    (58, "user-agent", ""),
];

/// Index of the newest dynamic table entry.
const FIRST_DYNAMIC: usize = 62;

#[derive(Default)]
pub struct IndexingEncoder {
    /// Newest first.
    dynamic: Vec<(String, String)>,
}

impl IndexingEncoder {
    pub fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for &(name, value) in fields {
            if let Some(index) = self.find(name, value) {
                integer(&mut block, index, 7, 0x80);
                continue;
            }
            match STATIC
                .iter()
                .find(|(_, static_name, _)| *static_name == name)
            {
                Some((index, _, _)) => integer(&mut block, *index, 6, 0x40),
                None => {
                    block.push(0x40);
                    string(&mut block, name);
                }
            }
            string(&mut block, value);
            self.dynamic.insert(0, (name.to_owned(), value.to_owned()));
        }
        block
    }

    fn find(&self, name: &str, value: &str) -> Option<usize> {
        STATIC
            .iter()
            .find(|(_, static_name, static_value)| {
                *static_name == name && *static_value == value && !value.is_empty()
            })
            .map(|(index, _, _)| *index)
            .or_else(|| {
                self.dynamic
                    .iter()
                    .position(|(known_name, known_value)| {
                        known_name == name && known_value == value
                    })
                    .map(|position| FIRST_DYNAMIC + position)
            })
    }
}

/// An HPACK integer with an `prefix`-bit prefix, its first byte or-ed with `mask`.
fn integer(block: &mut Vec<u8>, value: usize, prefix: u32, mask: u8) {
    let limit = (1usize << prefix) - 1;
    if value < limit {
        block.push(mask | value as u8);
        return;
    }
    block.push(mask | limit as u8);
    let mut rest = value - limit;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
}

/// A string literal, without Huffman coding.
fn string(block: &mut Vec<u8>, text: &str) {
    integer(block, text.len(), 7, 0);
    block.extend_from_slice(text.as_bytes());
}
