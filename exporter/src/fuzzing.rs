//! Entry points for the `cargo fuzz` targets in `fuzz/` (built only with `--cfg fuzzing`, which
//! cargo fuzz passes): each feeds one of vigil's crate-private parsers arbitrary input and asserts the
//! invariants its callers rely on. What the public API already reaches (the capture state machine,
//! the HTTP/2 connection parser, the cgroup path, the config loader) is fuzzed from `fuzz/` directly.

use crate::{
    capture::protocols::{http1::parse, http2::headers},
    discovery::{ContainerRef, process, service},
    kernel::tls_probes,
};

/// The HTTP/1 head parsers on the start of one transfer (`truncated`: the capture cut it). Asserts
/// that no head, pipelined message or body reaches past `data`.
pub fn http1_heads(data: &[u8], truncated: bool) {
    if let Some(request) = parse::parse_request(data, truncated) {
        if let Some(end) = request.end {
            assert!(end.length <= data.len(), "request head past its input");
        }
        let (following, _) = parse::following_requests(data, &request, truncated);
        assert_pipelined(data, &following, |head| head.end);
    }
    if let Some(status) = parse::parse_status(data) {
        assert!((100..=599).contains(&status), "status {status}");
    }
    let end = parse::response_head_end(data);
    if let Some(end) = end {
        assert!(end.length <= data.len(), "response head past its input");
    }
    let (following, _) = parse::following_responses(data, end, truncated);
    assert_pipelined(data, &following, |&(status, end)| {
        assert!((100..=599).contains(&status), "status {status}");
        end
    });
    if parse::is_incomplete_head(data) {
        assert!(data.len() <= parse::MAX_HEAD_PIECE && !data.contains(&b'\n'));
    }
    parse::ends_chunked_body(data);
}

/// Pipelined heads start inside `data`, in order, and end inside it.
fn assert_pipelined<Head>(
    data: &[u8],
    following: &[parse::Pipelined<Head>],
    end_of: impl Fn(&Head) -> Option<parse::HeadEnd>,
) {
    let mut previous = 0;
    for pipelined in following {
        assert!(
            pipelined.offset > previous && pipelined.offset < data.len(),
            "pipelined head at {} of {}",
            pipelined.offset,
            data.len()
        );
        previous = pipelined.offset;
        let end = end_of(&pipelined.head);
        if let Some(end) = end {
            assert!(
                pipelined.offset + end.length <= data.len(),
                "pipelined head past its input"
            );
        }
        let transfer = data.len() as u64;
        assert!(pipelined.bytes_after_head(end, transfer) <= transfer);
    }
}

/// Header blocks of one direction decoded in order, with HPACK state from the start (`reliable`) or
/// adopted mid-way. Asserts that a path read is a plausible one.
pub fn hpack_blocks(blocks: &[Option<Vec<u8>>], reliable: bool) {
    let mut decoder = headers::HeaderDecoder::new(reliable);
    for block in blocks {
        let (fields, _) = decoder.decode(block.clone());
        if let Some(path) = &fields.path {
            assert!(headers::is_plausible_path(path), "path {path:?}");
        }
    }
}

/// The /proc text vigil parses itself, each on `text`: `/proc/PID/maps` (the TLS library),
/// `/proc/PID/cgroup` (the unified path, then its container), the `/proc/PID/ns/net` link target,
/// `/proc/PID/net/tcp` (the served sockets) and `OTEL_RESOURCE_ATTRIBUTES` from `/proc/PID/environ`.
/// Asserts that what is found is part of `text`.
pub fn proc_text(text: &str) {
    if let Some(library) = tls_probes::libssl_in_maps(text) {
        assert!(text.contains(library) && !library.contains(char::is_whitespace));
    }
    if let Some(path) = process::unified_cgroup(text) {
        assert!(text.contains(path));
        check_container(path, &ContainerRef::from_cgroup_path(path));
    }
    process::net_namespace_inode(text);
    for (inode, _) in process::served_sockets_in(&[text]) {
        assert!(text.contains(&inode.to_string()));
    }
    for (key, _) in service::resource_attributes(text) {
        assert!(!key.is_empty() && text.contains(&key));
    }
}

/// A container id parsed from `path` is 64 hex digits found in it, and a pod UID is 36 hex digits and
/// dashes.
pub fn check_container(path: &str, container: &ContainerRef) {
    if let Some(id) = &container.container_id {
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(path.contains(id.as_str()));
    }
    if let Some(uid) = &container.pod_uid {
        assert_eq!(uid.len(), 36);
        assert!(uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }
}
