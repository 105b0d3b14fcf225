#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (run from anywhere; cargo fuzz adds what it finds).

Records are encoded as fuzz/src/lib.rs reads them. HTTP/2 header blocks are HPACK as real stacks write
them: static-table indices, and literals added to the dynamic table then referred to by index."""
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
RECEIVE, SEND, CLOSE, CONTROL = 0, 1, 2, 3


def entry(op, data=b"", conn=0, proc=0, step=1, missing=None):
    head = op | conn << 2 | proc << 5 | (0x80 if missing is not None else 0)
    out = struct.pack("<BbH", head, step, len(data)) + data
    if missing is not None:
        out += struct.pack("<H", missing)
    return out


def control(selector, argument=0):
    return struct.pack("<BBH", CONTROL | selector << 2, argument, 0)


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# HTTP/1 ------------------------------------------------------------------------------------------
REQ_GET = b"GET /orders/42?x=1 HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
REQ_POST = b"POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"item\": 42}\n"
REQ_CHUNKED = b"PUT /upload HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
REQ_HEAD = b"HEAD /health HTTP/1.1\r\nHost: shop\r\n\r\n"
RESP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
RESP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
RESP_204 = b"HTTP/1.1 204 No Content\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n"
RESP_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nMozilla\r\n9\r\nDeveloper\r\n0\r\n\r\n"
RESP_CLOSE = b"HTTP/1.0 404 Not Found\r\nServer: legacy\r\n\r\nnot here"
RESP_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
RESP_101 = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def http1_seeds():
    heads = {
        "get": REQ_GET, "post": REQ_POST, "chunked_request": REQ_CHUNKED, "head": REQ_HEAD,
        "response": RESP_OK, "response_204": RESP_204, "response_chunked": RESP_CHUNKED,
        "response_until_close": RESP_CLOSE, "pipelined_requests": REQ_GET + REQ_POST + REQ_HEAD,
        "pipelined_responses": RESP_OK + RESP_204 + RESP_HEAD, "unknown_method": b"PURGE /cache HTTP/1.1\r\n\r\n",
    }
    for name, head in heads.items():
        write("http1", "head_" + name, b"\x00" + head)
    write("http1", "head_cut", b"\x01" + REQ_GET[:20])
    conversations = {
        "server_keepalive": [(RECEIVE, REQ_GET), (SEND, RESP_OK), (RECEIVE, REQ_POST), (SEND, RESP_204), (CLOSE, b"")],
        "server_head": [(RECEIVE, REQ_HEAD), (SEND, RESP_HEAD), (RECEIVE, REQ_GET), (SEND, RESP_OK)],
        "server_chunked": [(RECEIVE, REQ_CHUNKED), (SEND, RESP_CHUNKED[:40]), (SEND, RESP_CHUNKED[40:]), (CLOSE, b"")],
        "server_pipelined": [(RECEIVE, REQ_GET + REQ_HEAD + REQ_POST), (SEND, RESP_OK + RESP_HEAD + RESP_204)],
        "server_pieces": [(RECEIVE, b"GET "), (RECEIVE, b"/a HTTP/1.1\r\n\r\n"), (SEND, b"HTTP/1.1 2"), (SEND, b"00 OK\r\nContent-Length: 0\r\n\r\n")],
        "server_continue": [(RECEIVE, REQ_POST[:80]), (SEND, RESP_CONTINUE), (RECEIVE, REQ_POST[80:]), (SEND, RESP_OK)],
        "server_upgrade": [(RECEIVE, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), (SEND, RESP_101), (RECEIVE, b"\x81\x05hello")],
        "client": [(SEND, REQ_GET), (RECEIVE, RESP_CLOSE), (CLOSE, b"")],
    }
    for name, records in conversations.items():
        write("http1", "conn_" + name, b"\x00" + b"".join(entry(op, data) for op, data in records))
    big = b"POST /big HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 900
    write("http1", "conn_truncated_body", b"\x00" + entry(RECEIVE, big, missing=60000) + entry(SEND, RESP_OK))
    return conversations


# HTTP/2 ------------------------------------------------------------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STATIC = {(":authority", ""): 1, (":method", "GET"): 2, (":method", "POST"): 3, (":path", "/"): 4,
          (":scheme", "http"): 6, (":status", "200"): 8, (":status", "204"): 9, (":status", "404"): 13,
          (":status", "500"): 14, ("content-type", ""): 31, ("user-agent", ""): 58,
          ("grpc-status", ""): None, ("grpc-message", ""): None, (":path", ""): 4, ("content-length", ""): 28}


def integer(value, bits, flags):
    limit = (1 << bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = [flags | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def string(text):
    data = text.encode()
    return integer(len(data), 7, 0) + data


class Encoder:
    """Indexes every field not in a table, like nghttp2 and chttp2."""

    def __init__(self):
        self.dynamic = []  # newest first

    def encode(self, fields):
        block = b""
        for name, value in fields:
            if (name, value) in self.dynamic:
                block += integer(62 + self.dynamic.index((name, value)), 7, 0x80)
                continue
            if STATIC.get((name, value)) and (name, value) != (":path", ""):
                block += integer(STATIC[(name, value)], 7, 0x80)
                continue
            name_index = STATIC.get((name, ""))
            block += integer(name_index, 6, 0x40) if name_index else b"\x40" + string(name)
            block += string(value)
            self.dynamic.insert(0, (name, value))
        return block


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, PADDED = 1, 4, 8


def grpc_message(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def http2_seeds():
    client, server = Encoder(), Encoder()
    settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, 65535))
    ack = frame(SETTINGS, 1, 0, b"")
    request = lambda path, stream: frame(HEADERS, END_HEADERS, stream, client.encode([
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "greeter:50051"),
        ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "grpc-python/1.60")]))
    response = lambda stream: frame(HEADERS, END_HEADERS, stream, server.encode([
        (":status", "200"), ("content-type", "application/grpc")]))
    trailers = lambda stream, status: frame(HEADERS, END_HEADERS | END_STREAM, stream, server.encode([
        ("grpc-status", status), ("grpc-message", "")]))
    body = lambda stream: frame(DATA, END_STREAM, stream, grpc_message(b"\x0a\x05world"))
    grpc = [
        (RECEIVE, PREFACE + settings + frame(WINDOW, 0, 0, b"\x00\x0f\x00\x01")),
        (SEND, settings + ack),
        (RECEIVE, ack + request("/helloworld.Greeter/SayHello", 1) + body(1)),
        (SEND, response(1) + frame(DATA, 0, 1, grpc_message(b"\x0a\x0bhello world")) + trailers(1, "0")),
        (RECEIVE, request("/helloworld.Greeter/SayHello", 3) + body(3)),
        (SEND, response(3) + trailers(3, "5")),
        (RECEIVE, frame(PING, 0, 0, b"\x00" * 8)), (SEND, frame(PING, 1, 0, b"\x00" * 8)),
        (RECEIVE, frame(GOAWAY, 0, 0, b"\x00\x00\x00\x03\x00\x00\x00\x00")),
        (CLOSE, b""),
    ]
    c2, s2 = Encoder(), Encoder()
    get = c2.encode([(":method", "GET"), (":scheme", "http"), (":path", "/api/items?page=2"), (":authority", "web")])
    h2c = [
        (SEND, PREFACE + settings),
        (RECEIVE, settings),
        (SEND, frame(HEADERS, END_STREAM, 1, get[:5]) + frame(CONTINUATION, END_HEADERS, 1, get[5:])),
        (RECEIVE, frame(HEADERS, END_HEADERS, 1, s2.encode([(":status", "404"), ("content-length", "9")]))),
        (RECEIVE, frame(DATA, END_STREAM | PADDED, 1, b"\x03not found\x00\x00\x00")),
        (SEND, frame(HEADERS, END_HEADERS, 3, c2.encode([(":method", "GET"), (":scheme", "http"), (":path", "/api/items?page=2"), (":authority", "web")]))),
        (SEND, frame(RST, 0, 3, b"\x00\x00\x00\x08")),
    ]
    server_first = [(SEND, settings), (RECEIVE, PREFACE + settings + ack)] + grpc[2:6]
    conversations = {"grpc_server": grpc, "h2c_client": h2c, "server_preface_first": server_first}
    for name, records in conversations.items():
        write("http2", name, b"\x00" + b"".join(entry(op, data) for op, data in records))
    # A connection adopted mid-way: whole frames, the HPACK state unknown.
    write("http2", "mid_connection", b"\x00" + entry(RECEIVE, request("/x.Y/Z", 5) + body(5)) + entry(SEND, response(5) + trailers(5, "0")))
    # Frames cut by the capture.
    big = request("/big.Upload/Put", 7) + frame(DATA, 0, 7, b"\x00" * 3000)
    write("http2", "truncated", b"\x00" + entry(RECEIVE, PREFACE + settings) + entry(RECEIVE, big[:1000], missing=len(big) - 1001) + entry(SEND, response(7) + trailers(7, "13")))
    # HPACK blocks alone: one direction's blocks in order, reliable and adopted.
    enc = Encoder()
    blocks = [enc.encode([(":method", "GET"), (":scheme", "http"), (":path", f"/items/{i}"), (":authority", "shop"), ("user-agent", "curl")]) for i in range(3)]
    blocks.append(b"\x3f\xe1\x1f" + enc.encode([(":method", "POST"), (":path", "/items/0")]))  # a table size update
    huffman = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")  # RFC 7541 C.4.1
    for name, flag in (("hpack_reliable", 1), ("hpack_adopted", 3)):
        write("http2", name, bytes([flag]) + b"".join(entry(RECEIVE, b) for b in blocks + [huffman]))
    write("http2", "hpack_lost_block", b"\x01" + entry(RECEIVE, blocks[0]) + entry(RECEIVE, blocks[1][:3], missing=5) + entry(RECEIVE, blocks[2]))
    return conversations


# Capture: several processes and connections, with drain ticks and heartbeats ---------------------
def capture_seeds(http1, http2):
    def conn(records, conn=0, proc=0):
        return [entry(op, data, conn=conn, proc=proc) for op, data in records]
    mixed = []
    a, b = conn(http1["server_keepalive"], 0, 0), conn(http2["grpc_server"], 1, 0)
    for i in range(max(len(a), len(b))):
        mixed += a[i:i + 1] + b[i:i + 1]
        if i % 3 == 2:
            mixed.append(control(0))
    mixed += [control(1, 40), control(2)]
    write("capture", "mixed_http1_grpc", b"".join(mixed))
    write("capture", "provisional_then_published",
          b"".join(conn(http1["server_pipelined"], 2, 1)) + control(0) + control(3 | 1 << 2, 0) + control(1, 1))
    write("capture", "not_selected_dropped",
          b"".join(conn(http1["server_head"], 3, 2)) + control(3 | 2 << 2, 2) + control(0))
    write("capture", "tls_plaintext", b"".join(conn(http1["server_chunked"], 7, 0)) + control(2))
    write("capture", "client_and_h2c", b"".join(conn(http1["client"], 4, 0) + conn(http2["h2c_client"], 5, 3)) + control(1, 255))
    write("capture", "unrecognized", b"".join([entry(RECEIVE, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", conn=6), entry(CLOSE, conn=6), control(1, 10)]))


# cgroup paths (the text after "0::" or a v1 hierarchy's "N:controllers:") -----------------------
def cgroup_seeds():
    cid = "4b2cd7ad5ea4a4f0bcd7e3f5a4e3b0e4ad1d7a4e3e55f6e6d1c4b7a8c9d0e1f2"
    uid = "0c3a8a1e-6c53-4b8e-9b7e-2f8f1d2c3b4a"
    us = uid.replace("-", "_")
    paths = {
        "kubelet_systemd_containerd": f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{us}.slice/cri-containerd-{cid}.scope",
        "kubelet_systemd_crio": f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{us}.slice/crio-{cid}.scope",
        "kubelet_systemd_guaranteed_docker": f"/kubepods.slice/kubepods-pod{us}.slice/docker-{cid}.scope",
        "kubelet_cgroupfs_containerd": f"/kubepods/burstable/pod{uid}/{cid}",
        "kubelet_cgroupfs_besteffort": f"/kubepods/besteffort/pod{uid}/{cid}",
        "kubelet_cgroupfs_v1_line": f"11:memory:/kubepods/pod{uid}/{cid}",
        "kind_nested": f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{us}.slice/cri-containerd-{cid}.scope",
        "docker_systemd": f"/system.slice/docker-{cid}.scope",
        "docker_cgroupfs": f"/docker/{cid}",
        "containerd_plain": f"/default/{cid}",
        "crio_conmon": f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{us}.slice/crio-conmon-{cid}.scope",
        "host_user_session": "/user.slice/user-1000.slice/session-3.scope",
        "host_service": "/system.slice/nginx.service",
        "root": "/",
        "podman": f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{cid}.scope/container",
    }
    for name, path in paths.items():
        write("cgroup", name, path.encode())
    return paths


# /proc text -------------------------------------------------------------------------------------
def proc_seeds(cgroups):
    maps = """55d4c7a00000-55d4c7a2c000 r--p 00000000 fd:01 1835040                    /usr/sbin/nginx
55d4c7a2c000-55d4c7b1f000 r-xp 0002c000 fd:01 1835040                    /usr/sbin/nginx
7f1c2b000000-7f1c2b021000 rw-p 00000000 00:00 0
7f1c2c5e0000-7f1c2c67c000 r--p 00000000 fd:01 1573201                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2c67c000-7f1c2c7e3000 r-xp 0009c000 fd:01 1573201                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2c9a0000-7f1c2c9c8000 r--p 00000000 fd:01 1573150                    /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd1e5f2000-7ffd1e613000 rw-p 00000000 00:00 0                          [stack]
7ffd1e7c4000-7ffd1e7c8000 r--p 00000000 00:00 0                          [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""
    write("proc_text", "maps_nginx_libssl", maps.encode())
    write("proc_text", "maps_deleted", b"7f00-7f10 r-xp 00000000 08:01 42 /opt/app/lib/libssl.so.1.1 (deleted)\n7f20-7f30 rw-p 0 00:00 0 \n")
    write("proc_text", "maps_static", b"00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/envoy\n")
    write("proc_text", "cgroup_v2", ("0::" + cgroups["kubelet_systemd_containerd"] + "\n").encode())
    v1 = "".join(f"{n}:{c}:{cgroups['kubelet_cgroupfs_containerd']}\n" for n, c in [(12, "pids"), (11, "memory"), (4, "cpu,cpuacct"), (1, "name=systemd")])
    write("proc_text", "cgroup_hybrid", (v1 + "0::/\n").encode())
    write("proc_text", "ns_net", b"net:[4026531840]")
    write("proc_text", "otel_attributes", b"service.name=checkout,service.namespace=shop,deployment.environment=prod%20eu,k8s.pod.name=checkout-7d9f")
    write("proc_text", "otel_attributes_malformed", b"broken,=x,service.name=a%2Cb,key=100%,%zz=%e2%82%ac")
    # /proc/net/tcp lines: parsed by the procfs crate, not vigil; kept as plausible text.
    write("proc_text", "net_tcp", b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 41310 1 0000000000000000 20 4 30 10 -1\n")


def config_seeds():
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.join(ROOT, "config"), exist_ok=True)
    shutil.copy(os.path.join(here, "..", "exporter", "src", "config", "default.yaml"), os.path.join(ROOT, "config", "default.yaml"))
    write("config", "selectors", b"""discovery:
  instrument:
    - open_ports: "80,443,8000-8999"
    - exe_path: "/usr/bin/*"
      k8s_namespace: shop
  exclude:
    - exe_path: "*/vigil"
metrics:
  ttl: 10m
  routes: ["/users/{id}/orders/{order}"]
  duration_buckets: [0.005, 0.01, 0.1, 1]
web:
  listen_address: "127.0.0.1:9400"
""")
    write("config", "bad_types", b"metrics:\n  ttl: forever\n  max_routes_per_service: -1\nweb:\n  listen_address: nowhere\n")


if __name__ == "__main__":
    h1 = http1_seeds()
    h2 = http2_seeds()
    capture_seeds(h1, h2)
    proc_seeds(cgroup_seeds())
    config_seeds()
