#!/usr/bin/python3
"""A tiny HTTP server answering every GET with its label: tells which peer a client reached.

Usage: label_http.py LABEL PORT. Prints "ready" once listening (IPv4 and IPv6).
"""
import http.server
import socket
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (sys.argv[1] + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server4(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # Clients that reset their connection (the tests close with RST) are expected:
        # nothing to report.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server6(Server4):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


port = int(sys.argv[2])
v4 = Server4(("0.0.0.0", port), Handler)
v6 = Server6(("::", port), Handler)
threading.Thread(target=v6.serve_forever, daemon=True).start()
print("ready", flush=True)
v4.serve_forever()
