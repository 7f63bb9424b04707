#!/usr/bin/env python3
"""TEST ONLY: a loopback redirect chain for agent-under-wine.sh.

    python3 redirect-lab.py      # listens on 127.0.0.1:<free port>, prints the port

    /start  302 Location: /meta
    /meta   200 text/html with <meta http-equiv="refresh" content="0;url=/final">
    /final  200 text/html

Prints the port on the first line of stdout, then serves until killed.
Standard library only.
"""
import http.server
import sys

PAGES = {
    "/meta": b'<!doctype html><html><head><meta http-equiv="refresh" content="0;url=/final">'
             b"<title>One moment</title></head><body>Redirecting...</body></html>",
    "/final": b"<!doctype html><html><head><title>Final</title></head><body>Landed.</body></html>",
}


class Lab(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/start":
            self.send_response(302)
            self.send_header("Location", "/meta")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = PAGES.get(path)
        if body is None:
            self.send_response(404)
            body = b"not found"
        else:
            self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("redirect-lab: %s\n" % (fmt % args))


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lab)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
