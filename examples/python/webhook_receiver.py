#!/usr/bin/env python3
"""Receive Link Peeler webhooks (protocol.md section 3.12), standard library only.

    LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \\
    python3 examples/python/webhook_receiver.py [--port PORT] [--host 127.0.0.1]

Prints one JSON line per event: first {"listening": URL}, then {"accepted": ...} for each new
delivery, {"duplicate": ...} for a delivery already accepted and {"rejected": ...} for a refused
request. Point the key's webhook at the URL: `link-peeler-relay keys set-webhook KEY_ID URL`.

A delivery is accepted only if
  1. X-Link-Peeler-Key is your key id (when LINK_PEELER_KEY_ID is set),
  2. X-Link-Peeler-Timestamp is within +-300 s of this machine's clock,
  3. X-Link-Peeler-Signature is HMAC-SHA256(secret, timestamp + "." + nonce + "." + raw body),
     compared in constant time (hmac.compare_digest),
and it is processed once per X-Link-Peeler-Delivery: the relay delivers at least once and keeps
the delivery id on every retry, so a duplicate is acknowledged (2xx, or the relay would keep
retrying) but not processed again.
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WINDOW_SECONDS = 300
MAX_BODY = 1024 * 1024
# The relay retries one delivery for 24 hours: remember ids a little longer. A real receiver keeps
# them in its database (a unique index on the delivery id) so that a restart forgets nothing.
REMEMBER_SECONDS = 25 * 3600
TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
SIGNATURE = re.compile(r"[0-9a-f]{64}")


def log(line):
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class Receiver(BaseHTTPRequestHandler):
    secret = b""
    key_id = None
    seen = {}  # delivery id -> when it was accepted
    lock = threading.Lock()

    def log_message(self, *args):  # keep stdout for the JSON lines
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refusal(self, body):
        """Why the request is not a genuine, fresh delivery; None when it is."""
        names = ("Key", "Timestamp", "Nonce", "Signature", "Delivery")
        values = [self.headers.get_all("X-Link-Peeler-" + n) or [] for n in names]
        if any(len(v) != 1 or not v[0] for v in values):
            return "missing header"
        key, timestamp, nonce, signature, _ = (v[0] for v in values)
        if self.key_id and key != self.key_id:
            return "unknown key"
        if not TIMESTAMP.fullmatch(timestamp):
            return "invalid timestamp"
        if abs(int(time.time()) - int(timestamp)) > WINDOW_SECONDS:
            return "stale timestamp"
        if not SIGNATURE.fullmatch(signature):
            return "bad signature"
        message = timestamp.encode() + b"." + nonce.encode() + b"." + body
        expected = hmac.new(self.secret, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "bad signature"
        return None

    def do_POST(self):
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self.answer(411, {"error": "Content-Length required"})
        if length < 0 or length > MAX_BODY:
            return self.answer(413, {"error": "body too large"})
        body = self.rfile.read(length)  # the raw bytes: verify before parsing
        delivery = self.headers.get("X-Link-Peeler-Delivery")
        why = self.refusal(body)
        if why:
            log({"rejected": delivery, "reason": why})
            return self.answer(401, {"error": why})
        try:
            job = json.loads(body)
        except ValueError:
            log({"rejected": delivery, "reason": "body is not JSON"})
            return self.answer(400, {"error": "body is not JSON"})
        now = time.time()
        with self.lock:
            for old in [d for d, at in self.seen.items() if now - at > REMEMBER_SECONDS]:
                del self.seen[old]
            duplicate = delivery in self.seen
            self.seen.setdefault(delivery, now)
        if duplicate:
            log({"duplicate": delivery})
            return self.answer(200, {"duplicate": True})
        # Answer quickly; do the real work (update your rows) after answering.
        self.answer(200, {"ok": True})
        result = job.get("result") or {}
        log({"accepted": delivery, "event": self.headers.get("X-Link-Peeler-Event"),
             "jobId": job.get("jobId"), "status": job.get("status"),
             "finalUrl": result.get("finalUrl"), "conclusion": result.get("conclusion")})

    def do_GET(self):
        self.answer(405, {"error": "POST only"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    secret = os.environ.get("LINK_PEELER_SECRET")
    if not secret:
        sys.exit("set LINK_PEELER_SECRET (and LINK_PEELER_KEY_ID) to the API key's credentials")
    Receiver.secret = secret.encode()
    Receiver.key_id = os.environ.get("LINK_PEELER_KEY_ID")
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    log({"listening": f"http://{shown}:{port}/hooks/link-peeler"})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
