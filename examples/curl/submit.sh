#!/usr/bin/env bash
# Submit one tracking link with curl and openssl, then read the job back.
#
#   LINK_PEELER_ENDPOINT=http://127.0.0.1:8787/api/links/fetch \
#   LINK_PEELER_KEY_ID=lp_test_... LINK_PEELER_SECRET=lp_sk_test_... \
#   examples/curl/submit.sh https://trk.example/a1 [idempotency-key]
set -euo pipefail
: "${LINK_PEELER_ENDPOINT:?set LINK_PEELER_ENDPOINT}"
: "${LINK_PEELER_KEY_ID:?set LINK_PEELER_KEY_ID}"
: "${LINK_PEELER_SECRET:?set LINK_PEELER_SECRET}"
url=${1:-https://example.com/}
idem=${2:-curl-$(openssl rand -hex 8)}

# HMAC-SHA256(secret, "timestamp.nonce.body"), lowercase hex.
sign() { # $1 timestamp, $2 nonce, $3 body
  printf '%s.%s.%s' "$1" "$2" "$3" |
    openssl dgst -sha256 -hmac "$LINK_PEELER_SECRET" -hex | sed 's/^.*= //'
}

# The body is sent exactly as signed (--data-binary keeps every byte).
body=$(printf '{"idempotencyKey":"%s","trackingUrl":"%s","source":"curl-example"}' "$idem" "$url")
ts=$(date +%s)
nonce=$(openssl rand -hex 16)
curl -sS --fail-with-body -X POST "$LINK_PEELER_ENDPOINT" \
  -H 'Content-Type: application/json' \
  -H "X-Link-Peeler-Key: $LINK_PEELER_KEY_ID" \
  -H "X-Link-Peeler-Timestamp: $ts" \
  -H "X-Link-Peeler-Nonce: $nonce" \
  -H "X-Link-Peeler-Signature: $(sign "$ts" "$nonce" "$body")" \
  --data-binary "$body"
echo

# Read it back by idempotency key: a signed GET with an empty body.
base=${LINK_PEELER_ENDPOINT%/api/links/fetch}
ts=$(date +%s)
nonce=$(openssl rand -hex 16)
curl -sS --fail-with-body "$base/api/links/jobs?idempotencyKey=$idem" \
  -H "X-Link-Peeler-Key: $LINK_PEELER_KEY_ID" \
  -H "X-Link-Peeler-Timestamp: $ts" \
  -H "X-Link-Peeler-Nonce: $nonce" \
  -H "X-Link-Peeler-Signature: $(sign "$ts" "$nonce" "")"
echo
