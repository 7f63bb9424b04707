#!/usr/bin/env python3
"""Submit one tracking link to a Link Peeler relay and optionally wait for the result.

    LINK_PEELER_ENDPOINT=http://127.0.0.1:8787/api/links/fetch \\
    LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \\
    python3 examples/python/submit.py https://trk.example/a1 [--idempotency-key K] [--wait SECONDS]

Standard library only (Python 3.8+).
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


def signed_request(method, url, key_id, secret, body=b""):
    timestamp = str(int(time.time()))
    nonce = str(uuid.uuid4())
    message = timestamp.encode() + b"." + nonce.encode() + b"." + body
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    headers = {
        "X-Link-Peeler-Key": key_id,
        "X-Link-Peeler-Timestamp": timestamp,
        "X-Link-Peeler-Nonce": nonce,
        "X-Link-Peeler-Signature": signature,
    }
    if body:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_url")
    parser.add_argument("--idempotency-key", default=f"python-{uuid.uuid4()}")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the job to finish")
    args = parser.parse_args()
    try:
        endpoint = os.environ["LINK_PEELER_ENDPOINT"]
        key_id = os.environ["LINK_PEELER_KEY_ID"]
        secret = os.environ["LINK_PEELER_SECRET"]
    except KeyError as missing:
        sys.exit(f"environment variable {missing} is not set")

    # Serialise once and sign exactly these bytes.
    body = json.dumps({"idempotencyKey": args.idempotency_key, "trackingUrl": args.tracking_url,
                       "source": "python-example"}).encode()
    status, job = signed_request("POST", endpoint, key_id, secret, body)
    print(json.dumps({"status": status, "job": job}))
    if status not in (200, 202):
        return 1

    deadline = time.monotonic() + args.wait
    job_url = urllib.parse.urljoin(endpoint, "/api/links/jobs/" + job["jobId"])
    while job["status"] in ("queued", "leased") and time.monotonic() < deadline:
        time.sleep(0.5)
        status, job = signed_request("GET", job_url, key_id, secret)
        if status != 200:
            print(json.dumps({"status": status, "error": job}))
            return 1
    if args.wait:
        print(json.dumps({"status": 200, "job": job}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
