#!/usr/bin/env python3
"""Benchmark: what capturing HTTP with vigil costs a server, against no instrumentation and against
in-process instrumentation (prom-client middleware).

One invocation runs the variants interleaved, ROUNDS times each (so that a machine getting
slower or faster affects them alike), each round a fresh node server under wrk with keep-alive:

  plain       the server, no vigil running
  vigil-idle  the server, vigil running with its probes attached but selecting another port: what the
              syscall tracepoints cost a process vigil does not capture
  vigil       the same server, captured by a running vigil (release build)
  prom-client the server with a prom-client histogram observing every request, no vigil

and prints, per variant, the server's CPU time per request (median over rounds), the ratios to plain,
vigil's own CPU time per captured request, vigil's RSS, and the difference between the requests wrk
completed and those vigil counted. No assertion: figures only. Needs root (vigil loads eBPF).

Usage: scripts/bench-http.py [--rounds N] [--seconds S] [--connections C]
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD = os.path.join(ROOT, "integration", "workloads", "http-server")
VIGIL = os.path.join(ROOT, "target", "release", "vigil")
TICKS = os.sysconf("SC_CLK_TCK")
# The server runs alone on the first CPU, wrk and vigil on the others: the server's CPU time then
# measures what instrumentation adds to it, not how it shares a core with the load generator.
SERVER_CPU = "0"
OTHER_CPUS = f"1-{max(os.cpu_count() - 1, 1)}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def captured_requests(admin_port, service):
    total = 0
    for line in get(admin_port, "/metrics").splitlines():
        if line.startswith("http_server_request_duration_seconds_count{") and f'service_name="{service}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def start_server(port, prom_client):
    env = dict(os.environ, PORT=str(port))
    if prom_client:
        env["PROM_CLIENT"] = "1"
    server = subprocess.Popen(["taskset", "-c", SERVER_CPU, "node", "server.js"], cwd=WORKLOAD, env=env, stdout=subprocess.PIPE)
    assert server.stdout.readline().decode().strip() == f"listening {port}"
    return server


def start_vigil(server_port, capture):
    """vigil selecting the server's port (capture) or another one (its probes attached, the server not
    captured)."""
    admin_port = free_port()
    selected_port = server_port if capture else free_port()
    config = os.path.join("/tmp", f"vigil-bench-{os.getpid()}.yaml")
    with open(config, "w") as f:
        f.write(f"discovery:\n  instrument: [{{open_ports: '{selected_port}'}}]\n")
    vigil = subprocess.Popen(
        ["taskset", "-c", OTHER_CPUS, VIGIL, "--config", config, f"--web.listen-address=127.0.0.1:{admin_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: get(admin_port, "/ready") is not None, 20, "vigil ready")
    if not capture:
        return vigil, admin_port

    def published():
        table = json.loads(get(admin_port, "/debug/discovery"))
        return any(p["state"] == "instrumented" and server_port in (p["listening_ports"] or []) for p in table["processes"])

    wait_for(published, 10, "the server published")
    return vigil, admin_port


def run_wrk(port, seconds, connections):
    output = subprocess.run(
        ["taskset", "-c", OTHER_CPUS, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/users/1"],
        check=True, capture_output=True, text=True,
    ).stdout
    return int(re.search(r"(\d+) requests in", output).group(1))


def one_round(variant, seconds, connections):
    port = free_port()
    server = start_server(port, prom_client=(variant == "prom-client"))
    vigil = admin_port = None
    try:
        if variant in ("vigil", "vigil-idle"):
            vigil, admin_port = start_vigil(port, capture=(variant == "vigil"))
        run_wrk(port, 1, connections)  # warm-up: JIT, connection setup
        time.sleep(0.3)  # vigil drains the warm-up's records
        capturing = variant == "vigil"
        counted_before = captured_requests(admin_port, "node") if capturing else 0
        server_cpu, vigil_cpu = cpu_seconds(server.pid), vigil and cpu_seconds(vigil.pid)
        requests = run_wrk(port, seconds, connections)
        server_cpu = cpu_seconds(server.pid) - server_cpu
        result = {"requests": requests, "server_us": server_cpu * 1e6 / requests}
        if capturing:
            time.sleep(0.3)  # one drain interval and more
            result["vigil_us"] = (cpu_seconds(vigil.pid) - vigil_cpu) * 1e6 / requests
            result["rss_mib"] = rss_mib(vigil.pid)
            # wrk does not count the responses in flight when it stops; the server served them.
            result["counted_minus_completed"] = captured_requests(admin_port, "node") - counted_before - requests
        return result
    finally:
        if vigil:
            vigil.send_signal(signal.SIGTERM)
            vigil.wait()
        server.kill()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: vigil loads eBPF programs")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "vigil"], cwd=ROOT, check=True)
    if not os.path.isdir(os.path.join(WORKLOAD, "node_modules", "prom-client")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=WORKLOAD, check=True)

    variants = ["plain", "vigil-idle", "vigil", "prom-client"]
    results = {variant: [] for variant in variants}
    for round_number in range(1, args.rounds + 1):
        for variant in variants:
            result = one_round(variant, args.seconds, args.connections)
            results[variant].append(result)
            extra = ""
            if variant == "vigil":
                extra = (f"  vigil {result['vigil_us']:.2f} µs/req, RSS {result['rss_mib']:.1f} MiB, "
                         f"counted - completed {result['counted_minus_completed']:+d}")
            print(f"round {round_number} {variant:12} {result['requests'] / args.seconds:8.0f} req/s  "
                  f"server {result['server_us']:.2f} µs/req{extra}", flush=True)

    median = {v: statistics.median(r["server_us"] for r in results[v]) for v in variants}
    vigil_rounds = results["vigil"]
    print()
    print(f"server CPU per request (median of {args.rounds} rounds, wrk -c{args.connections} keep-alive, {args.seconds} s):")
    for variant in variants:
        print(f"  {variant:12} {median[variant]:6.2f} µs   ×{median[variant] / median['plain']:.2f} of plain")
    print(f"vigil's own CPU per captured request: {statistics.median(r['vigil_us'] for r in vigil_rounds):.2f} µs (median)")
    print(f"vigil RSS: {max(r['rss_mib'] for r in vigil_rounds):.1f} MiB (max)")
    print(f"requests/s with vigil: {statistics.median(r['requests'] for r in vigil_rounds) / args.seconds:.0f} (median)")
    print("counted - completed per vigil round (in-flight responses wrk did not count; negative = lost): "
          + ", ".join(f"{r['counted_minus_completed']:+d}" for r in vigil_rounds))


if __name__ == "__main__":
    main()
