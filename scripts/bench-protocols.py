#!/usr/bin/env python3
"""Benchmark: what capturing gRPC (HTTP/2) and HTTPS with vigil costs a server, against the same server
with no vigil running.

Variants, interleaved ROUNDS times each (a fresh server every round, the load generator on the server's
CPU and vigil alone on the others, as in bench-http.py):

  grpc   the @grpc/grpc-js server (integration/workloads/grpc), unary calls of vigil.test.Echo/Unary
         from h2load (C connections, M streams each, a gRPC-framed request body): HTTP/2 frames, HPACK
  https  the node HTTPS server (integration/workloads/tls), wrk over C keep-alive TLS connections:
         plaintext from the TLS uprobes on node's statically linked OpenSSL

each as plain (no vigil) and vigil (capturing the server, release build). Prints, per protocol and
variant, the server's CPU time per request (median over rounds), the ratio to plain, vigil's CPU time
per captured request, vigil's RSS, and the difference between the requests the load generator
completed and those vigil counted. No assertion: figures only. Needs root (vigil loads eBPF).

Usage: scripts/bench-protocols.py [--rounds N] [--seconds S] [--connections C] [--streams M]
"""

import argparse
import importlib.util
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_http", os.path.join(HERE, "bench-http.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

GRPC = os.path.join(bench.ROOT, "integration", "workloads", "grpc", "server.js")
HTTPS = os.path.join(bench.ROOT, "integration", "workloads", "tls", "https_server.js")


def counted(admin_port, family):
    """Requests (or calls) of `family` vigil counted for the node service."""
    total = 0
    for line in bench.get(admin_port, "/metrics").splitlines():
        if line.startswith(f"{family}_count{{") and 'service_name="node"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def start_server(protocol, port, certs):
    if protocol == "grpc":
        command = ["node", GRPC, "--port", str(port)]
    else:
        command = ["node", HTTPS, "--port", str(port), "--cert", certs[0], "--key", certs[1]]
    server = subprocess.Popen(["taskset", "-c", bench.SERVER_CPU, *command], stdout=subprocess.PIPE)
    assert server.stdout.readline().decode().strip() == f"listening {port}"
    return server


def run_load(protocol, port, seconds, args, body):
    if protocol == "grpc":
        command = [
            "h2load", f"-c{args.connections}", f"-m{args.streams}", f"-D{seconds}", "-d", body,
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://127.0.0.1:{port}/vigil.test.Echo/Unary",
        ]
        pattern = r"(\d+) succeeded"
    else:
        command = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", f"https://127.0.0.1:{port}/ok"]
        pattern = r"(\d+) requests in"
    output = subprocess.run(["taskset", "-c", bench.SERVER_CPU, *command], check=True, capture_output=True, text=True).stdout
    return int(re.search(pattern, output).group(1))


def one_round(protocol, variant, args, certs, body):
    port = bench.free_port()
    server = start_server(protocol, port, certs)
    vigil = admin_port = None
    family = "rpc_server_call_duration_seconds" if protocol == "grpc" else "http_server_request_duration_seconds"
    try:
        if variant == "vigil":
            vigil, admin_port = bench.start_vigil(port, capture=True)
            if protocol == "https":
                bench.wait_for(lambda: b"attached to" in bench.get(admin_port, "/debug/discovery").encode(), 10, "TLS probes")
        run_load(protocol, port, 1, args, body)  # warm-up: JIT, connection setup
        time.sleep(0.3)
        before = counted(admin_port, family) if vigil else 0
        server_cpu, vigil_cpu = bench.cpu_seconds(server.pid), vigil and bench.threads_cpu_seconds(vigil.pid)
        requests = run_load(protocol, port, args.seconds, args, body)
        result = {"requests": requests, "server_us": (bench.cpu_seconds(server.pid) - server_cpu) * 1e6 / requests}
        if vigil:
            time.sleep(0.5)
            result["vigil_us"] = (bench.threads_cpu_seconds(vigil.pid) - vigil_cpu) * 1e6 / requests
            result["rss_mib"] = bench.rss_mib(vigil.pid)
            result["counted_minus_completed"] = counted(admin_port, family) - before - requests
        return result
    finally:
        if vigil:
            vigil.send_signal(signal.SIGTERM)
            vigil.wait()
        server.kill()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--streams", type=int, default=10, help="concurrent gRPC calls per connection")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="vigil-bench-")
    certs = (os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem"))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", certs[1], "-out", certs[0]],
        check=True, capture_output=True,
    )
    body = os.path.join(workdir, "unary.bin")
    with open(body, "wb") as f:
        f.write(b"\x00" + (2).to_bytes(4, "big") + b"ok")  # one gRPC message: "ok"
    results = {}
    for _ in range(args.rounds):
        for protocol in ("grpc", "https"):
            for variant in ("plain", "vigil"):
                results.setdefault((protocol, variant), []).append(one_round(protocol, variant, args, certs, body))
    for protocol in ("grpc", "https"):
        plain = statistics.median(r["server_us"] for r in results[(protocol, "plain")])
        print(f"{protocol}: {args.connections} connections" + (f" x {args.streams} streams" if protocol == "grpc" else ""))
        for variant in ("plain", "vigil"):
            rounds = results[(protocol, variant)]
            server = statistics.median(r["server_us"] for r in rounds)
            line = f"  {variant:6} server {server:7.2f} us/request ({server / plain:.3f}x plain), {statistics.median(r['requests'] for r in rounds):.0f} requests/round"
            if variant == "vigil":
                line += (
                    f"; vigil {statistics.median(r['vigil_us'] for r in rounds):.2f} us/request,"
                    f" RSS {max(r['rss_mib'] for r in rounds):.1f} MiB,"
                    f" counted - completed {[r['counted_minus_completed'] for r in rounds]}"
                )
            print(line)


if __name__ == "__main__":
    main()
