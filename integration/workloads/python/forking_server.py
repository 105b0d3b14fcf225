"""Workload: process-tree shapes a serving process can come from, each ending in listeners on PORT.

`forking_server.py prefork PORT`: listens, then forks two workers without exec (a pre-fork server); all
three accept on the inherited socket. `forking_server.py daemon PORT`: double-forks and detaches
(setsid); only the grandchild lives on and listens. Both print `listening PORT` once serving.
"""

import os
import socket
import sys
import time


def listen(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    return server


def serve_forever(server):
    while True:
        connection, _ = server.accept()
        connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        connection.close()


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "prefork":
        server = listen(port)
        for _ in range(2):
            if os.fork() == 0:
                serve_forever(server)
        print(f"listening {port}", flush=True)
        serve_forever(server)
    elif mode == "daemon":
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        server = listen(port)
        print(f"listening {port}", flush=True)
        serve_forever(server)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
