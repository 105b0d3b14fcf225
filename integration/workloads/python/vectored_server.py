#!/usr/bin/env python3
"""An HTTP/1.1 server for capture tests that moves its bytes with the less common socket syscalls.

PORT from the environment; IO selects the syscalls:
  msg     requests read with recvmsg; each response (3000-byte body, Content-Length) sent with one
          sendmsg of two buffers, head and body; connections kept alive
  vector  requests read with readv; the response head sent with send, then a 3000-byte body with
          sendfile from a file, delimited by closing the connection (no Content-Length)
Prints "listening PORT" once listening. One request per read: clients wait for each response.
"""
import os
import socket
import tempfile
import threading

PORT = int(os.environ["PORT"])
IO = os.environ["IO"]
BODY = b"x" * 3000

body_file = tempfile.TemporaryFile()
body_file.write(BODY)
body_file.flush()


def receive(connection):
    if IO == "msg":
        data, _, _, _ = connection.recvmsg(65536)
        return data
    buffer = bytearray(65536)
    received = os.readv(connection.fileno(), [buffer])
    return bytes(buffer[:received])


def serve(connection):
    with connection:
        while receive(connection):
            if IO == "msg":
                head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)
                connection.sendmsg([head, BODY])
            else:
                connection.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                offset = 0
                while offset < len(BODY):
                    offset += os.sendfile(connection.fileno(), body_file.fileno(), offset, len(BODY) - offset)
                return


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(128)
print(f"listening {PORT}", flush=True)
while True:
    connection, _ = listener.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
