#!/usr/bin/env python3
"""Benchmark: what capturing HTTP with vigil costs a server, against no instrumentation and against
in-process instrumentation (prom-client middleware).

One invocation runs the variants interleaved, ROUNDS times each (so that a machine getting
slower or faster affects them alike), each round a fresh node server under each of two keep-alive
loads (C connections), the load generator on the server's CPU and vigil alone on the other CPUs (so
that vigil never takes CPU from the server or the load generator, and the two talk without
cross-CPU wakeups, which in a VM cost more and vary more than the work measured; `--placement split`
puts the load generator beside vigil instead):

  saturating  wrk, as fast as the server answers
  fixed rate  h2load --h1 at RATE requests/s in all, the same work for every variant (under saturation
              a slower load generator changes how many requests the server handles per wakeup)

and the variants:

  plain       the server, no vigil running
  vigil-idle  the server, vigil running with its probes attached but selecting another port: what the
              syscall tracepoints cost a process vigil does not capture
  vigil       the same server, captured by a running vigil (release build)
  prom-client the server with a prom-client histogram observing every request, no vigil

and prints, per load and variant, the server's CPU time per request (median over rounds), the ratios to
plain, vigil's own CPU time per captured request, vigil's RSS, and the difference between the requests
the load generator completed and those vigil counted. A last saturating run with the kernel's BPF run
statistics on (kernel.bpf_stats_enabled, which costs some time itself, so it is not one of the timed
rounds) prints the time vigil's eBPF programs ran per request, for the server and the load generator.

Last, a syscall loop (integration/workloads/syscall-loop, built with cc) measures the kernel side alone,
with far less noise than a server: what a hooked syscall costs a process vigil does not capture, one
it captures, and a syscall vigil does not hook, each against the same loop with no vigil running.
No assertion: figures only. Needs root (vigil loads eBPF). Its gRPC (HTTP/2) and HTTPS variants are in
scripts/bench-protocols.py, which reuses this script's helpers.

Usage: scripts/bench-http.py [--rounds N] [--seconds S] [--connections C] [--rate R] [--placement P]
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
SYSCALL_LOOP = os.path.join(ROOT, "integration", "workloads", "syscall-loop", "loop.c")
# The server (and, by default, the load generator) on the first CPU, vigil on the others.
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


def threads_cpu_seconds(pid):
    """CPU time of a process's live threads, in seconds, to the nanosecond (/proc/PID/task/*/schedstat;
    clock ticks are too coarse for vigil's few percent of a CPU)."""
    total_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total_ns += int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended meanwhile
    return total_ns / 1e9


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


def run_load(load, port, seconds, connections, rate, placement):
    """Runs a load against the server; returns the requests it completed."""
    url = f"http://127.0.0.1:{port}/users/1"
    if load == "saturating":
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
        pattern = r"(\d+) requests in"
    else:
        command = ["h2load", "--h1", f"-c{connections}", f"--rps={rate / connections:g}", f"-D{seconds}", url]
        pattern = r"(\d+) succeeded"
    cpus = SERVER_CPU if placement == "shared" else OTHER_CPUS
    output = subprocess.run(["taskset", "-c", cpus, *command], check=True, capture_output=True, text=True).stdout
    return int(re.search(pattern, output).group(1))


def one_round(variant, load, args):
    port = free_port()
    server = start_server(port, prom_client=(variant == "prom-client"))
    vigil = admin_port = None
    try:
        if variant in ("vigil", "vigil-idle"):
            vigil, admin_port = start_vigil(port, capture=(variant == "vigil"))
        run_load("saturating", port, 1, args.connections, args.rate, args.placement)  # warm-up: JIT, connection setup
        time.sleep(0.3)  # vigil drains the warm-up's records
        capturing = variant == "vigil"
        counted_before = captured_requests(admin_port, "node") if capturing else 0
        server_cpu, vigil_cpu = cpu_seconds(server.pid), vigil and threads_cpu_seconds(vigil.pid)
        requests = run_load(load, port, args.seconds, args.connections, args.rate, args.placement)
        server_cpu = cpu_seconds(server.pid) - server_cpu
        result = {"requests": requests, "server_us": server_cpu * 1e6 / requests}
        if capturing:
            time.sleep(0.3)  # one drain interval and more
            result["vigil_us"] = (threads_cpu_seconds(vigil.pid) - vigil_cpu) * 1e6 / requests
            result["rss_mib"] = rss_mib(vigil.pid)
            # A load generator does not count the responses in flight when it stops; the server served them.
            result["counted_minus_completed"] = captured_requests(admin_port, "node") - counted_before - requests
        return result
    finally:
        if vigil:
            vigil.send_signal(signal.SIGTERM)
            vigil.wait()
        server.kill()
        server.wait()


def program_runs(pid):
    """(run_time_ns, run_cnt) summed over the eBPF programs process `pid` holds (fdinfo of its program fds)."""
    time_ns = count = 0
    fd_dir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fd_dir):
        try:
            with open(os.path.join(fd_dir, fd)) as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if "prog_type" in info:
            time_ns += int(info.get("run_time_ns", "0"))
            count += int(info.get("run_cnt", "0"))
    return time_ns, count


def probe_time(args):
    """eBPF program time per request under saturating load, with the kernel's BPF statistics on."""
    stats = "/proc/sys/kernel/bpf_stats_enabled"
    with open(stats) as f:
        previous = f.read().strip()
    port = free_port()
    server = start_server(port, prom_client=False)
    vigil, _ = start_vigil(port, capture=True)
    try:
        with open(stats, "w") as f:
            f.write("1")
        before = program_runs(vigil.pid)
        requests = run_load("saturating", port, args.seconds, args.connections, args.rate, args.placement)
        after = program_runs(vigil.pid)
        return (after[0] - before[0]) / requests, (after[1] - before[1]) / requests
    finally:
        with open(stats, "w") as f:
            f.write(previous)
        vigil.send_signal(signal.SIGTERM)
        vigil.wait()
        server.kill()
        server.wait()


def syscall_costs(rounds, iterations=300_000):
    """Median ns per iteration of the syscall loop (transfer: a write and a read; other: getppid), with no
    vigil, with vigil running but not capturing the loop, and with vigil capturing it."""
    binary = os.path.join("/tmp", f"vigil-bench-loop-{os.getpid()}")
    subprocess.run(["cc", "-O2", "-o", binary, SYSCALL_LOOP], check=True)
    port = free_port()
    loop = subprocess.Popen(["taskset", "-c", SERVER_CPU, binary, str(port), str(iterations)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert loop.stdout.readline().strip() == f"listening {port}"

        def measure():
            figures = []
            for what in ("transfer", "other"):
                loop.stdin.write(what + "\n")
                loop.stdin.flush()
                figures.append(float(loop.stdout.readline()))
            return figures

        results = {variant: [] for variant in ("plain", "vigil-idle", "vigil")}
        for _ in range(rounds):
            results["plain"].append(measure())
            for variant in ("vigil-idle", "vigil"):
                vigil, _ = start_vigil(port, capture=(variant == "vigil"))
                try:
                    results[variant].append(measure())
                finally:
                    vigil.send_signal(signal.SIGTERM)
                    vigil.wait()
        return {variant: [statistics.median(r[i] for r in runs) for i in (0, 1)] for variant, runs in results.items()}
    finally:
        loop.kill()
        loop.wait()
        os.unlink(binary)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rate", type=int, default=20000, help="requests/s of the fixed-rate load")
    parser.add_argument("--placement", choices=["shared", "split"], default="shared",
                        help="load generator on the server's CPU (shared) or beside vigil (split)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: vigil loads eBPF programs")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "vigil"], cwd=ROOT, check=True)
    if not os.path.isdir(os.path.join(WORKLOAD, "node_modules", "prom-client")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=WORKLOAD, check=True)

    variants = ["plain", "vigil-idle", "vigil", "prom-client"]
    loads = ["saturating", "fixed rate"]
    results = {(load, variant): [] for load in loads for variant in variants}
    for round_number in range(1, args.rounds + 1):
        for load in loads:
            for variant in variants:
                result = one_round(variant, load, args)
                results[(load, variant)].append(result)
                extra = ""
                if variant == "vigil":
                    extra = (f"  vigil {result['vigil_us']:.2f} µs/req, RSS {result['rss_mib']:.1f} MiB, "
                             f"counted - completed {result['counted_minus_completed']:+d}")
                print(f"round {round_number} {load:10} {variant:12} {result['requests'] / args.seconds:8.0f} req/s  "
                      f"server {result['server_us']:.2f} µs/req{extra}", flush=True)

    for load in loads:
        median = {v: statistics.median(r["server_us"] for r in results[(load, v)]) for v in variants}
        vigil_rounds = results[(load, "vigil")]
        how = "wrk" if load == "saturating" else f"h2load {args.rate} req/s"
        print()
        print(f"{load}: server CPU per request (median of {args.rounds} rounds, {how}, "
              f"{args.connections} keep-alive connections, {args.seconds} s):")
        print("  (ratio of medians; in brackets the median of the per-round ratios, each against the plain run")
        print("  of the same round, which the machine's drift between rounds affects less)")
        for variant in variants:
            paired = statistics.median(
                r["server_us"] / plain["server_us"]
                for r, plain in zip(results[(load, variant)], results[(load, "plain")])
            )
            print(f"  {variant:12} {median[variant]:6.2f} µs   ×{median[variant] / median['plain']:.2f} of plain"
                  f"   [×{paired:.2f}]")
        print(f"  vigil's own CPU per captured request: "
              f"{statistics.median(r['vigil_us'] for r in vigil_rounds):.2f} µs (median)")
        print(f"  vigil RSS: {max(r['rss_mib'] for r in vigil_rounds):.1f} MiB (max)")
        print(f"  requests/s with vigil: {statistics.median(r['requests'] for r in vigil_rounds) / args.seconds:.0f} (median)")
        print("  counted - completed per vigil round (in-flight responses the load generator did not count; "
              "negative = lost): " + ", ".join(f"{r['counted_minus_completed']:+d}" for r in vigil_rounds))
    time_ns, runs = probe_time(args)
    print()
    print(f"eBPF programs per request (saturating, statistics on): {time_ns:.0f} ns in {runs:.1f} runs")

    costs = syscall_costs(args.rounds)
    plain_transfer, plain_other = costs["plain"]
    print()
    print(f"syscall loop (median of {args.rounds} rounds): ns per write+read of 100 bytes, and per getppid")
    for variant, (transfer, other) in costs.items():
        print(f"  {variant:12} write+read {transfer:7.1f} ns (+{transfer - plain_transfer:6.1f})"
              f"   getppid {other:6.1f} ns (+{other - plain_other:5.1f})")


if __name__ == "__main__":
    main()
