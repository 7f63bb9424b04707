#!/usr/bin/env python3
"""Follow the Link Peeler results feed (protocol.md section 3.10) with a stored cursor.

    LINK_PEELER_ENDPOINT=http://127.0.0.1:8787/api/links/fetch \\
    LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \\
    python3 examples/python/feed.py --cursor-file feed.cursor [--wait 30] [--until-idle]

For integrators that can only make outbound requests. Prints one JSON line per finished job
(`cursor`, `event`, `jobId`, `rowId`, `status`, `finalUrl`, `conclusion`) in the order the jobs
finished. The cursor file holds the last cursor processed: the program resumes after it, so a
restart sees every later job (and at worst the last page again: deduplicate by jobId). Without
--until-idle it runs until interrupted; with it, it stops at the first long poll that brings
nothing. Standard library only (Python 3.8+).
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


def signed_get(url, key_id, secret, timeout):
    """A signed GET: the signature covers timestamp.nonce. and the empty body."""
    timestamp = str(int(time.time()))
    nonce = str(uuid.uuid4())
    message = (timestamp + "." + nonce + ".").encode()
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, method="GET", headers={
        "X-Link-Peeler-Key": key_id,
        "X-Link-Peeler-Timestamp": timestamp,
        "X-Link-Peeler-Nonce": nonce,
        "X-Link-Peeler-Signature": signature,
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def read_cursor(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or "0"
    except FileNotFoundError:
        return "0"


def store_cursor(path, cursor):
    """Write then rename, so a crash leaves the old cursor or the new one, never half of one."""
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(cursor + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cursor-file", required=True)
    parser.add_argument("--wait", type=int, default=30, choices=range(0, 31), metavar="0..30",
                        help="seconds the relay holds a request when nothing finished yet")
    parser.add_argument("--until-idle", action="store_true",
                        help="stop at the first answer without events")
    args = parser.parse_args()
    try:
        endpoint = os.environ["LINK_PEELER_ENDPOINT"]
        key_id = os.environ["LINK_PEELER_KEY_ID"]
        secret = os.environ["LINK_PEELER_SECRET"]
    except KeyError as missing:
        sys.exit(f"environment variable {missing} is not set")
    feed = urllib.parse.urljoin(endpoint, "/api/links/events")

    cursor = read_cursor(args.cursor_file)
    while True:
        query = urllib.parse.urlencode({"after": cursor, "waitSeconds": args.wait})
        try:
            status, page = signed_get(f"{feed}?{query}", key_id, secret, timeout=args.wait + 30)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            print(json.dumps({"error": f"cannot reach the relay: {error}"}), file=sys.stderr)
            if args.until_idle:
                return 1
            time.sleep(5)  # then ask again from the same cursor
            continue
        if status != 200:
            print(json.dumps({"status": status, "error": page}))
            return 1
        for event in page["events"]:
            job = event["job"]
            result = job.get("result") or {}
            # Process the job here (update your row); it may be a repeat after a crash.
            print(json.dumps({"cursor": event["cursor"], "event": event["event"],
                              "jobId": job["jobId"], "rowId": job.get("rowId"),
                              "status": job["status"], "finalUrl": result.get("finalUrl"),
                              "conclusion": result.get("conclusion")}), flush=True)
        # Only after the events are processed: the next run resumes after them.
        if page["nextCursor"] != cursor:
            cursor = page["nextCursor"]
            store_cursor(args.cursor_file, cursor)
        if not page["events"] and args.until_idle:
            return 0


if __name__ == "__main__":
    sys.exit(main())
