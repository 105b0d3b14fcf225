"""A gRPC client over h2c for vigil's gRPC capture tests: the same CLI and output as ../grpc/client.js,
with grpcio and no serializers (messages are raw bytes), driving either gRPC server.
  grpc_client.py --port P --plan PLAN
    PLAN is a comma list of method:arg:times, e.g. Unary:ok:10,ServerStream:5:4,Bidi:3:2. The arg is
    Unary's payload (ok/not_found/internal), ServerStream's message count, the number of messages
    Bidi/ClientStream send, and ignored by FailMidway. All calls go one after another on ONE channel.
  grpc_client.py --port P --loop [--stop-file F]
    Unary b"ok" calls, one at a time about 5 ms apart on one channel, until SIGTERM or file F exists;
    prints "started" once the first call succeeded, so a test knows the connection is open and busy.
Either way it ends by printing one JSON line counting calls by method and the status the client saw,
e.g. {"Unary/OK": 10, "Unary/NOT_FOUND": 3}. An OK call (or a FailMidway call) whose replies were not what
the server should have sent (a short stream, a wrong echo) counts as "<method>/MISMATCH", so a test notices.
"""
import argparse
import json
import os
import queue
import signal
import time
from collections import Counter

import grpc


def messages(count):
    return [f"message {i}".encode() for i in range(count)]


def bidi_requests(count, replies):
    """Ping-pong: each message goes out after the previous echo came back, so frames really interleave."""
    for message in messages(count):
        yield message
        replies.get(timeout=10)


class Client:
    def __init__(self, port):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = lambda kind, method: getattr(self.channel, kind)(f"/vigil.test.Echo/{method}")
        self.unary = stub("unary_unary", "Unary")
        self.server_stream = stub("unary_stream", "ServerStream")
        self.fail_midway = stub("unary_stream", "FailMidway")
        self.bidi = stub("stream_stream", "Bidi")
        self.client_stream = stub("stream_unary", "ClientStream")
        self.counts = Counter()

    def receive(self, method, arg, received):
        """Makes one call, appending its replies to `received`; raises grpc.RpcError if it failed."""
        if method == "Unary":
            received.append(self.unary(arg.encode()))
        elif method in ("ServerStream", "FailMidway"):
            stub = self.server_stream if method == "ServerStream" else self.fail_midway
            received.extend(stub(arg.encode()))
        elif method == "Bidi":
            echoes = queue.Queue()
            for reply in self.bidi(bidi_requests(int(arg), echoes)):
                received.append(reply)
                echoes.put(reply)
        elif method == "ClientStream":
            received.append(self.client_stream(iter(messages(int(arg)))))
        else:
            raise ValueError(f"unknown method {method}")

    def call(self, method, arg):
        received = []
        try:
            self.receive(method, arg, received)
            status = "OK"
        except grpc.RpcError as error:
            status = error.code().name
        expected = {
            "Unary": lambda: [arg.encode()],
            "ServerStream": lambda: messages(int(arg)),
            "Bidi": lambda: messages(int(arg)),
            "ClientStream": lambda: [arg.encode()],
            "FailMidway": lambda: messages(2),
        }[method]()
        wrong = (status == "OK" or method == "FailMidway") and received != expected
        self.counts[f"{method}/{'MISMATCH' if wrong else status}"] += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan")
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--stop-file")
    args = parser.parse_args()
    client = Client(args.port)
    if args.loop:
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        started = False
        while not stopping and not (args.stop_file and os.path.exists(args.stop_file)):
            client.call("Unary", "ok")
            if not started and client.counts["Unary/OK"]:
                print("started", flush=True)
                started = True
            time.sleep(0.005)
    else:
        for step in args.plan.split(","):
            method, arg, times = step.split(":")
            for _ in range(int(times)):
                client.call(method, arg)
    print(json.dumps(client.counts), flush=True)
    client.channel.close()


if __name__ == "__main__":
    main()
