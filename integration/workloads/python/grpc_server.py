"""A gRPC server over h2c (no TLS) for vigil's gRPC capture tests: the same vigil.test.Echo service as
../grpc/server.js, with grpcio's generic handlers and no serializers (messages are raw bytes, no protoc).
  Unary         request b"ok" -> OK with the payload echoed; b"not_found" -> NOT_FOUND; b"internal" -> INTERNAL
  ServerStream  request is an ASCII integer N -> N messages, then OK
  Bidi          echoes each message; OK when the client ends its side
  ClientStream  counts the client's messages; replies once with the count (ASCII), OK
  FailMidway    two messages, then ABORTED (a status that none of the other methods returns)
Usage: grpc_server.py --port P. Binds 127.0.0.1; prints "listening P" once serving.
"""
import argparse
from concurrent import futures

import grpc

UNARY_OUTCOMES = {b"not_found": grpc.StatusCode.NOT_FOUND, b"internal": grpc.StatusCode.INTERNAL}


def unary(request, context):
    if request == b"ok":
        return request
    context.abort(UNARY_OUTCOMES.get(request, grpc.StatusCode.INVALID_ARGUMENT), f"asked for {request!r}")


def server_stream(request, context):
    for i in range(int(request)):
        yield f"message {i}".encode()


def bidi(requests, context):
    yield from requests


def client_stream(requests, context):
    return str(sum(1 for _ in requests)).encode()


def fail_midway(request, context):
    yield b"message 0"
    yield b"message 1"
    context.abort(grpc.StatusCode.ABORTED, "failed midway")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    handlers = grpc.method_handlers_generic_handler("vigil.test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "FailMidway": grpc.unary_stream_rpc_method_handler(fail_midway),
    })
    # Each streaming call holds a worker thread for its lifetime; 16 is plenty for the tests.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[handlers])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
