"""Workload: answers every GET with 200 and a two-byte body over HTTP/1.1 keep-alive, one thread per
connection; prints `listening PORT` once serving. Usage: any_path_server.py [PORT] (else $PORT)"""

import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each response in one write, sent at once: a head and a body written apart wait on Nagle's
    # algorithm and the client's delayed acknowledgement (tens of milliseconds per request).
    disable_nagle_algorithm = True

    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def log_message(self, *args):
        pass


port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(f"listening {port}", flush=True)
server.serve_forever()
