// Follow the Link Peeler results feed (protocol.md §3.10) with a stored cursor — Node 18+, no
// dependencies.
//
//   LINK_PEELER_ENDPOINT=http://127.0.0.1:8787/api/links/fetch \
//   LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \
//   node examples/node/feed.mjs --cursor-file FILE [--wait 0..30] [--until-idle]
//
// For integrators that can only make outbound requests. Prints one JSON line per finished job
// in the order the jobs finished, and stores the cursor after each page (write, then rename), so
// a restart resumes after the last job processed (and at worst sees the last page again:
// deduplicate by jobId). With --until-idle it stops at the first answer without events.
import crypto from "node:crypto";
import fs from "node:fs";
import { parseArgs } from "node:util";

const endpoint = process.env.LINK_PEELER_ENDPOINT;
const keyId = process.env.LINK_PEELER_KEY_ID;
const secret = process.env.LINK_PEELER_SECRET;
if (!endpoint || !keyId || !secret) {
  console.error("set LINK_PEELER_ENDPOINT, LINK_PEELER_KEY_ID and LINK_PEELER_SECRET");
  process.exit(2);
}
const usage = "usage: feed.mjs --cursor-file FILE [--wait 0..30] [--until-idle]";
let values;
try {
  ({ values } = parseArgs({
    options: {
      "cursor-file": { type: "string" },
      wait: { type: "string", default: "30" },
      "until-idle": { type: "boolean", default: false },
    },
  }));
} catch (e) {
  console.error(`${e.message}\n${usage}`);
  process.exit(2);
}
const cursorFile = values["cursor-file"];
const untilIdle = values["until-idle"];
const wait = Number(values.wait);
if (!cursorFile || !/^[0-9]+$/.test(values.wait) || wait > 30) {
  console.error(usage);
  process.exit(2);
}
const feed = new URL("/api/links/events", endpoint);

function readCursor() {
  try {
    return fs.readFileSync(cursorFile, "utf8").trim() || "0";
  } catch (e) {
    if (e.code === "ENOENT") return "0";
    throw e;
  }
}

function storeCursor(cursor) {
  const temp = `${cursorFile}.tmp`;
  const fd = fs.openSync(temp, "w");
  fs.writeSync(fd, `${cursor}\n`);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(temp, cursorFile);
}

/// A signed GET: the signature covers `timestamp.nonce.` and the empty body.
async function signedGet(url) {
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const nonce = crypto.randomUUID();
  const signature = crypto.createHmac("sha256", secret)
    .update(`${timestamp}.${nonce}.`).digest("hex");
  const response = await fetch(url, {
    headers: {
      "X-Link-Peeler-Key": keyId,
      "X-Link-Peeler-Timestamp": timestamp,
      "X-Link-Peeler-Nonce": nonce,
      "X-Link-Peeler-Signature": signature,
    },
    signal: AbortSignal.timeout((wait + 30) * 1000),
  });
  return { status: response.status, body: await response.json() };
}

let cursor = readCursor();
for (;;) {
  feed.search = new URLSearchParams({ after: cursor, waitSeconds: String(wait) }).toString();
  let answer;
  try {
    answer = await signedGet(feed);
  } catch (error) {
    console.error(JSON.stringify({ error: `cannot reach the relay: ${error.message}` }));
    if (untilIdle) process.exit(1);
    await new Promise((r) => setTimeout(r, 5000)); // then ask again from the same cursor
    continue;
  }
  if (answer.status !== 200) {
    console.log(JSON.stringify({ status: answer.status, error: answer.body }));
    process.exit(1);
  }
  const { events, nextCursor } = answer.body;
  for (const { cursor: at, event, job } of events) {
    // Process the job here (update your row); it may be a repeat after a crash.
    console.log(JSON.stringify({
      cursor: at, event, jobId: job.jobId, rowId: job.rowId ?? null, status: job.status,
      finalUrl: job.result?.finalUrl ?? null, conclusion: job.result?.conclusion ?? null,
    }));
  }
  // Only after the events are processed: the next run resumes after them.
  if (nextCursor !== cursor) {
    cursor = nextCursor;
    storeCursor(cursor);
  }
  if (events.length === 0 && untilIdle) process.exit(0);
}
