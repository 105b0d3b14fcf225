"""An HTTPS (HTTP/1.1 over TLS, keep-alive) server for vigil's TLS capture tests: Python's ssl module
uses the system's shared libssl.so.3, so this is the dynamically linked TLS case. Routes:
  /ok -> 200 "ok"    /missing -> 404    /fail -> 500    anything else -> 200
Usage: https_server.py --port P --cert CERT.pem --key KEY.pem. Binds 127.0.0.1; prints "listening P"
once serving.
"""
import argparse
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUSES = {"/ok": 200, "/missing": 404, "/fail": 500}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the connection open between requests, which needs an exact Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the second waits ~40 ms for the
    # client's delayed ACK, on every request.
    disable_nagle_algorithm = True

    def do_GET(self):
        status = STATUSES.get(self.path, 200)
        body = b"ok" if status == 200 else f"status {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass  # one stderr line per request would only be noise in test logs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
