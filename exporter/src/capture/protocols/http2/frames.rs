//! HTTP/2 framing, one direction of a connection at a time: frames split over transfers, several in
//! one transfer, and frames whose bytes lie past what the kernel captured of a transfer.
//!
//! Every frame starts with a 9-byte head (payload length, type, flags, stream id). The reader walks
//! the heads across transfers; it keeps the payload of the frames that carry header blocks or end a
//! stream (HEADERS, CONTINUATION, RST_STREAM) and only the length of the others. When a head lies past
//! the captured bytes, where the next frame starts is unknown: the direction is *lost* until a transfer
//! whose frames chain exactly from its first byte to its last shows where frames start again
//! ([`chains_exactly`]).

/// The client connection preface (RFC 9113 §3.4), before the client's first frame.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEAD_LEN: usize = 9;

/// Frame types vigil follows (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub const END_STREAM: u8 = 0x1;
/// SETTINGS: an acknowledgement (the same bit as `END_STREAM`).
pub const SETTINGS_ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// A header block longer than this is not kept (its decoding, and the direction's HPACK state, are
/// lost): a bound on what one connection can make vigil hold.
const MAX_KEPT_PAYLOAD: usize = 64 * 1024;

/// The largest frame a transfer seen for the first time, or one read after the direction was lost, may
/// hold to be taken for HTTP/2 (peers raise `SETTINGS_MAX_FRAME_SIZE` from 16 KiB, rarely past this).
const MAX_PLAUSIBLE_FRAME: u32 = 1 << 20;

/// A frame's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8]) -> FrameHead {
        FrameHead {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether its payload is kept for the connection.
    fn keeps_payload(&self) -> bool {
        matches!(self.kind, HEADERS | CONTINUATION | RST_STREAM)
    }

    /// Whether it can be a frame of a well-behaved peer: a known type, on the stream (or not) that its
    /// type requires, with the length its type requires, and no larger than [`MAX_PLAUSIBLE_FRAME`].
    fn is_plausible(&self) -> bool {
        let on_stream = self.stream != 0;
        self.length <= MAX_PLAUSIBLE_FRAME
            && match self.kind {
                DATA | HEADERS | CONTINUATION | PUSH_PROMISE => on_stream,
                PRIORITY => on_stream && self.length == 5,
                RST_STREAM => on_stream && self.length == 4,
                SETTINGS => !on_stream && self.length.is_multiple_of(6),
                PING => !on_stream && self.length == 8,
                GOAWAY => !on_stream && self.length >= 8,
                WINDOW_UPDATE => self.length == 4,
                _ => false,
            }
    }
}

/// A frame read whole: its head, and its payload when kept ([`FrameHead::keeps_payload`]) and every
/// byte of it was captured.
#[derive(Debug)]
pub struct Frame {
    pub head: FrameHead,
    pub payload: Option<Vec<u8>>,
    /// When the transfer that ended it returned.
    pub at_ns: u64,
}

/// What the reader met in a transfer, in order.
#[derive(Debug)]
pub enum FrameEvent {
    Frame(Frame),
    /// Frames were lost: a frame head lay past the captured bytes, or was not a frame head. What the
    /// lost frames carried (header blocks among them) is unknown.
    Lost,
}

/// A frame whose payload is being read.
#[derive(Debug)]
struct OpenFrame {
    head: FrameHead,
    /// Payload bytes still to come.
    remaining: u64,
    /// Kept payload, while every byte so far was captured; `None` when not kept or one was missed.
    payload: Option<Vec<u8>>,
}

impl OpenFrame {
    /// The frame, read whole by the transfer that returned at `at_ns`.
    fn into_event(self, at_ns: u64) -> FrameEvent {
        FrameEvent::Frame(Frame {
            head: self.head,
            payload: self.payload,
            at_ns,
        })
    }
}

/// One direction's framing position.
#[derive(Debug)]
pub struct FrameReader {
    /// Preface bytes still to pass over before the first frame (the client's direction only).
    preface: usize,
    /// The start of a frame head that the transfer before ended in.
    head_piece: Vec<u8>,
    open: Option<OpenFrame>,
    /// Where frames start is unknown.
    lost: bool,
}

impl FrameReader {
    /// A direction whose next byte starts a frame, after `preface` bytes of the connection preface.
    pub fn at_frame_start(preface: usize) -> Self {
        FrameReader {
            preface,
            head_piece: Vec::new(),
            open: None,
            lost: false,
        }
    }

    /// Follows one transfer of `length` bytes, of which `data` were captured; what it completes goes
    /// to `out`.
    pub fn transfer(&mut self, data: &[u8], length: u64, at_ns: u64, out: &mut Vec<FrameEvent>) {
        if self.lost {
            if !chains_exactly(data, length) {
                return;
            }
            self.lost = false;
            self.head_piece.clear();
            self.open = None;
        }
        let captured = data.len() as u64;
        let mut offset = 0u64;
        if self.preface > 0 {
            let passed = (self.preface as u64).min(length);
            self.preface -= passed as usize;
            offset = passed;
        }
        while offset < length {
            if let Some(open) = &mut self.open {
                let taken = open.remaining.min(length - offset);
                if let Some(payload) = &mut open.payload {
                    let end = offset + taken;
                    if end > captured || payload.len() as u64 + taken > MAX_KEPT_PAYLOAD as u64 {
                        open.payload = None;
                    } else {
                        payload.extend_from_slice(&data[offset as usize..end as usize]);
                    }
                }
                open.remaining -= taken;
                offset += taken;
                if open.remaining == 0 {
                    out.push(self.open.take().expect("open frame").into_event(at_ns));
                }
                continue;
            }
            let wanted = (FRAME_HEAD_LEN - self.head_piece.len()) as u64;
            let end = (offset + wanted).min(length);
            if end > captured {
                self.lose(out);
                return;
            }
            self.head_piece
                .extend_from_slice(&data[offset as usize..end as usize]);
            offset = end;
            if self.head_piece.len() < FRAME_HEAD_LEN {
                return;
            }
            let head = FrameHead::parse(&self.head_piece);
            self.head_piece.clear();
            self.open = Some(OpenFrame {
                head,
                remaining: u64::from(head.length),
                payload: head.keeps_payload().then(Vec::new),
            });
            if head.length == 0 {
                out.push(self.open.take().expect("open frame").into_event(at_ns));
            }
        }
    }

    fn lose(&mut self, out: &mut Vec<FrameEvent>) {
        self.lost = true;
        self.head_piece.clear();
        self.open = None;
        out.push(FrameEvent::Lost);
    }
}

/// Whether a transfer captured whole is a run of plausible frames from its first byte to exactly its
/// last: how a connection is taken for HTTP/2 without its preface, and where a lost direction finds
/// frame starts again.
pub fn chains_exactly(data: &[u8], length: u64) -> bool {
    if data.len() as u64 != length || data.len() < FRAME_HEAD_LEN {
        return false;
    }
    let mut offset = 0;
    while offset + FRAME_HEAD_LEN <= data.len() {
        let head = FrameHead::parse(&data[offset..]);
        if !head.is_plausible() {
            return false;
        }
        offset += FRAME_HEAD_LEN + head.length as usize;
    }
    offset == data.len()
}

/// The header block fragment of a HEADERS frame's payload: without its padding and priority fields.
pub fn header_block_fragment(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    let mut fragment = payload;
    let mut padding = 0usize;
    if flags & PADDED != 0 {
        padding = usize::from(*fragment.first()?);
        fragment = &fragment[1..];
    }
    if flags & PRIORITY_FLAG != 0 {
        fragment = fragment.get(5..)?;
    }
    fragment.get(..fragment.len().checked_sub(padding)?)
}

/// A frame's bytes, for tests: its head, then `payload`.
#[cfg(test)]
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(events: &[FrameEvent]) -> Vec<(u8, u32, Option<Vec<u8>>)> {
        events
            .iter()
            .map(|event| match event {
                FrameEvent::Frame(frame) => {
                    (frame.head.kind, frame.head.stream, frame.payload.clone())
                }
                FrameEvent::Lost => (0xff, 0, None),
            })
            .collect()
    }

    #[test]
    fn frames_split_over_transfers_and_several_in_one_are_read_whole() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0; 6]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, b"abcdef"));
        bytes.extend(frame(DATA, END_STREAM, 1, &[7; 40]));
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"xy"));
        // Every split point, in two transfers.
        for split in 1..bytes.len() {
            let mut reader = FrameReader::at_frame_start(PREFACE.len());
            let mut out = Vec::new();
            let (first, second) = bytes.split_at(split);
            reader.transfer(first, first.len() as u64, 1, &mut out);
            reader.transfer(second, second.len() as u64, 2, &mut out);
            assert_eq!(
                frames(&out),
                vec![
                    (SETTINGS, 0, None),
                    (HEADERS, 1, Some(b"abcdef".to_vec())),
                    (DATA, 1, None),
                    (HEADERS, 3, Some(b"xy".to_vec())),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_head_past_the_captured_bytes_loses_the_direction_until_a_transfer_chains_exactly() {
        let mut reader = FrameReader::at_frame_start(0);
        let mut out = Vec::new();
        // A DATA frame of 100 bytes, then a HEADERS frame whose head was not captured.
        let mut bytes = frame(DATA, 0, 1, &[0; 100]);
        bytes.extend(frame(HEADERS, END_HEADERS, 3, b"abc"));
        reader.transfer(&bytes[..50], bytes.len() as u64, 1, &mut out);
        // The DATA frame's payload is not kept: its head is enough.
        assert_eq!(frames(&out), vec![(DATA, 1, None), (0xff, 0, None)]);
        // The rest of a frame whose start was lost: not frames, ignored.
        out.clear();
        reader.transfer(&[0x42; 30], 30, 2, &mut out);
        assert!(out.is_empty());
        // A transfer of whole frames: frames again.
        reader.transfer(&frame(HEADERS, END_HEADERS, 5, b"q"), 10, 3, &mut out);
        assert_eq!(frames(&out), vec![(HEADERS, 5, Some(b"q".to_vec()))]);
    }

    #[test]
    fn a_kept_payload_past_the_captured_bytes_is_read_without_it() {
        let mut reader = FrameReader::at_frame_start(0);
        let mut out = Vec::new();
        let bytes = frame(HEADERS, END_HEADERS, 1, &[1; 60]);
        reader.transfer(&bytes[..40], bytes.len() as u64, 1, &mut out);
        assert_eq!(frames(&out), vec![(HEADERS, 1, None)]);
    }

    #[test]
    fn only_runs_of_plausible_frames_chain_exactly() {
        let mut bytes = frame(HEADERS, END_HEADERS, 1, b"abc");
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        assert!(chains_exactly(&bytes, bytes.len() as u64));
        assert!(!chains_exactly(
            &bytes[..bytes.len() - 1],
            bytes.len() as u64 - 1
        ));
        assert!(
            !chains_exactly(&bytes, bytes.len() as u64 + 10),
            "not captured whole"
        );
        assert!(!chains_exactly(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27));
        assert!(
            !chains_exactly(&frame(SETTINGS, 0, 1, &[0; 6]), 15),
            "SETTINGS on a stream"
        );
        assert!(
            !chains_exactly(&[0x16, 3, 1, 0, 0x20, 1, 0, 0, 0x1c], 9),
            "a TLS record"
        );
    }

    #[test]
    fn padding_and_priority_are_not_part_of_the_header_block() {
        assert_eq!(header_block_fragment(0, b"abc"), Some(&b"abc"[..]));
        assert_eq!(
            header_block_fragment(PADDED, b"\x02abcpp"),
            Some(&b"abc"[..])
        );
        assert_eq!(
            header_block_fragment(PRIORITY_FLAG, b"\0\0\0\x01\x10abc"),
            Some(&b"abc"[..])
        );
        assert_eq!(header_block_fragment(PADDED, b"\x09ab"), None);
    }
}
