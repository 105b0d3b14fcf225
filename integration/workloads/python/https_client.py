"""An HTTPS client for vigil's TLS capture tests: GETs over ONE keep-alive TLS connection (the server's
self-signed certificate is not verified), through the system's shared libssl.so.3.
Usage: https_client.py --port P --plan /ok:10,/missing:3,/fail:2   (path:times, in order)
Prints one JSON line counting responses by path and status, e.g. {"/ok 200": 10, "/missing 404": 3}.
"""
import argparse
import http.client
import json
import ssl
from collections import Counter


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", required=True)
    args = parser.parse_args()
    connection = http.client.HTTPSConnection("127.0.0.1", args.port, context=ssl._create_unverified_context())
    counts = Counter()
    for step in args.plan.split(","):
        path, times = step.rsplit(":", 1)
        for _ in range(int(times)):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()  # the whole body, so the next request can reuse the connection
            counts[f"{path} {response.status}"] += 1
    connection.close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
