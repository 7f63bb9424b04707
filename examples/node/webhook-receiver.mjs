// Receive Link Peeler webhooks (protocol.md §3.12) — Node 18+, no dependencies.
//
//   LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \
//   node examples/node/webhook-receiver.mjs [PORT]
//
// Listens on 127.0.0.1:PORT (default: any free port; HOST changes the address) and prints one
// JSON line per event: first {"listening": URL}, then {"accepted": ...} for each new delivery,
// {"duplicate": ...} for a delivery already accepted and {"rejected": ...} for a refused request.
// Point the key's webhook at the URL: `link-peeler-relay keys set-webhook KEY_ID URL`.
//
// A delivery is accepted only if
//   1. X-Link-Peeler-Key is your key id (when LINK_PEELER_KEY_ID is set),
//   2. X-Link-Peeler-Timestamp is within ±300 s of this machine's clock,
//   3. X-Link-Peeler-Signature is HMAC-SHA256(secret, timestamp + "." + nonce + "." + raw body),
//      compared in constant time,
// and it is processed once per X-Link-Peeler-Delivery: the relay delivers at least once and
// keeps the delivery id on every retry, so a duplicate is acknowledged (2xx, or the relay
// would keep retrying) but not processed again.
import crypto from "node:crypto";
import http from "node:http";

const secret = process.env.LINK_PEELER_SECRET;
const keyId = process.env.LINK_PEELER_KEY_ID; // optional: also check the key id
if (!secret) {
  console.error("set LINK_PEELER_SECRET (and LINK_PEELER_KEY_ID) to the API key's credentials");
  process.exit(2);
}
const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.argv[2] ?? 0);

const WINDOW_SECONDS = 300;
const MAX_BODY = 1024 * 1024;
// The relay retries one delivery for 24 hours: remember ids a little longer. A real receiver
// keeps them in its database (a unique index on the delivery id) so a restart forgets nothing.
const REMEMBER_MS = 25 * 3600 * 1000;
const seen = new Map(); // delivery id -> when it was accepted

function log(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

/// Why the request is not a genuine, fresh delivery; null when it is.
function refusal(headers, body) {
  const h = (name) => headers[name];
  const [key, timestamp, nonce, signature, delivery] = [
    "x-link-peeler-key", "x-link-peeler-timestamp", "x-link-peeler-nonce",
    "x-link-peeler-signature", "x-link-peeler-delivery",
  ].map(h);
  if (![key, timestamp, nonce, signature, delivery].every((v) => typeof v === "string" && v)) {
    return "missing header";
  }
  if (keyId && key !== keyId) return "unknown key";
  if (!/^[1-9][0-9]{0,11}$/.test(timestamp)) return "invalid timestamp";
  if (Math.abs(Math.floor(Date.now() / 1000) - Number(timestamp)) > WINDOW_SECONDS) {
    return "stale timestamp";
  }
  if (!/^[0-9a-f]{64}$/.test(signature)) return "bad signature";
  const expected = crypto.createHmac("sha256", secret)
    .update(`${timestamp}.${nonce}.`).update(body).digest();
  if (!crypto.timingSafeEqual(expected, Buffer.from(signature, "hex"))) return "bad signature";
  return null;
}

const server = http.createServer((req, res) => {
  const answer = (status, json) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(json));
  };
  if (req.method !== "POST") return answer(405, { error: "POST only" });
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      answer(413, { error: "body too large" });
      req.destroy();
    } else {
      chunks.push(chunk);
    }
  });
  req.on("end", () => {
    if (size > MAX_BODY) return;
    const body = Buffer.concat(chunks); // the raw bytes: verify before parsing
    const why = refusal(req.headers, body);
    const delivery = req.headers["x-link-peeler-delivery"];
    if (why) {
      log({ rejected: delivery ?? null, reason: why });
      return answer(401, { error: why });
    }
    const now = Date.now();
    for (const [id, at] of seen) if (now - at > REMEMBER_MS) seen.delete(id);
    if (seen.has(delivery)) {
      log({ duplicate: delivery });
      return answer(200, { duplicate: true });
    }
    let job;
    try {
      job = JSON.parse(body.toString("utf8"));
    } catch {
      log({ rejected: delivery, reason: "body is not JSON" });
      return answer(400, { error: "body is not JSON" });
    }
    seen.set(delivery, now);
    // Answer quickly; do the real work (update your rows) after answering.
    answer(200, { ok: true });
    log({
      accepted: delivery,
      event: req.headers["x-link-peeler-event"],
      jobId: job.jobId,
      status: job.status,
      finalUrl: job.result?.finalUrl ?? null,
      conclusion: job.result?.conclusion ?? null,
    });
  });
});

server.listen(port, host, () => {
  const { address, port: bound } = server.address();
  const shown = address.includes(":") ? `[${address}]` : address;
  log({ listening: `http://${shown}:${bound}/hooks/link-peeler` });
});
