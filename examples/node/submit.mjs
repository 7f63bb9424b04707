// Submit one tracking link to a Link Peeler relay — the product page's Node template.
//
//   LINK_PEELER_ENDPOINT=http://127.0.0.1:8787/api/links/fetch \
//   LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \
//   node examples/node/submit.mjs https://trk.example/a1 [idempotency-key]
//
// Needs Node 18+ (global fetch). No dependencies.
import crypto from "node:crypto";

const endpoint = process.env.LINK_PEELER_ENDPOINT;
const keyId = process.env.LINK_PEELER_KEY_ID;
const secret = process.env.LINK_PEELER_SECRET;
if (!endpoint || !keyId || !secret) {
  console.error("set LINK_PEELER_ENDPOINT, LINK_PEELER_KEY_ID and LINK_PEELER_SECRET");
  process.exit(2);
}
const trackingUrl = process.argv[2] ?? "https://example.com/";
const idempotencyKey = process.argv[3] ?? `node-${crypto.randomUUID()}`;

const body = JSON.stringify({ idempotencyKey, trackingUrl, source: "node-example", rowId: "1" });
const timestamp = Math.floor(Date.now() / 1000).toString();
const nonce = crypto.randomUUID();
const signature = crypto
  .createHmac("sha256", secret)
  .update([timestamp, nonce, body].join("."))
  .digest("hex");

const response = await fetch(endpoint, {
  method: "POST",
  headers: {
    "Content-Type": "application/json",
    "X-Link-Peeler-Key": keyId,
    "X-Link-Peeler-Timestamp": timestamp,
    "X-Link-Peeler-Nonce": nonce,
    "X-Link-Peeler-Signature": signature,
  },
  body,
});
const job = await response.json();
console.log(JSON.stringify({ status: response.status, job }));
if (!response.ok) process.exit(1);
