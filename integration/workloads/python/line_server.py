"""A TCP server speaking a line protocol that is not HTTP (Redis-like: `PING` is answered `+PONG`),
for vigil's coverage tests: its connections are captured but no protocol vigil parses recognises them.
PORT from the environment; prints `listening PORT` once it listens."""
import os
import socketserver


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"+PONG\r\n" if line.strip() == b"PING" else b"-ERR unknown\r\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


port = int(os.environ["PORT"])
with Server(("127.0.0.1", port), Handler) as server:
    print(f"listening {port}", flush=True)
    server.serve_forever()
