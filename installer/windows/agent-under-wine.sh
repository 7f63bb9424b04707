#!/usr/bin/env bash
# Runs the cross-built Windows agent under wine as a real agent, end to end:
#
#   installer/windows/agent-under-wine.sh target/x86_64-pc-windows-gnu/installer-check/link-peeler.exe
#
# In a throwaway WINEPREFIX, against a Linux relay (target/debug/link-peeler-relay,
# built if missing) and a loopback redirect lab (test/redirect-lab.py):
#
#   1. `link-peeler.exe enroll` stores the device credentials in wine's
#      Credential Manager (CredWriteW; wine keeps them, encrypted, under
#      HKCU\Software\Wine\Credential Manager), and `status --json` says enrolled
#      and shows the Windows sensors' readings (power status read, metered unknown);
#   2. `link-peeler.exe run --headless --allow-network 127.0.0.0/8` long-polls the
#      relay, resolves a signed job for /start (302 Location → /meta, a
#      <meta refresh> → /final) and posts the result; the job reads `done`,
#      `resolved`, three hops: location, meta_refresh, then /final.
#
# All traffic stays on 127.0.0.1. Prints PASS/FAIL lines; exits non-zero on the
# first failure. Needs wine (wine64), python3, and x86_64-w64-mingw32-gcc when
# wine lacks bcryptprimitives.dll (wine 8: see test/bcryptprimitives-stub.c).
# Environment: LP_WINE_JOB_TIMEOUT (seconds to wait for the job, default 60).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 PATH/TO/link-peeler.exe" >&2; exit 2; }
[ -f "$1" ] || { echo "no exe at $1" >&2; exit 2; }
exe="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
job_timeout="${LP_WINE_JOB_TIMEOUT:-60}"
started=$SECONDS

pass() { printf 'PASS  wine agent: %s\n' "$*"; }
fail() {
  printf 'FAIL  wine agent: %s\n' "$*" >&2
  for log in agent.log relay.log lab.log; do
    if [ -s "$work/$log" ]; then
      printf -- '--- last lines of %s\n' "$log" >&2
      tail -25 "$work/$log" >&2
    fi
  done
  exit 1
}

work="$(mktemp -d)"
relay_pid="" lab_pid="" agent_pid=""
stop() { # pid: TERM, up to 5 s, then KILL
  local pid="$1" tries=0
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 10 ]; do
    sleep 0.5; tries=$((tries + 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$agent_pid"
  if [ -n "${WINEPREFIX:-}" ] && command -v wineserver >/dev/null; then
    wineserver -k 2>/dev/null || true
  fi
  stop "$relay_pid"
  stop "$lab_pid"
  rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- tools
command -v wine >/dev/null || fail "wine is missing (apt-get install wine wine64)"
command -v python3 >/dev/null || fail "python3 is missing"
relay_bin="$root/target/debug/link-peeler-relay"
if [ ! -x "$relay_bin" ]; then
  (cd "$root" && cargo build -p link-peeler-relay >&2) || fail "cargo build -p link-peeler-relay"
fi

# ---------------------------------------------------------------- wine prefix
export WINEPREFIX="$work/prefix" WINEARCH=win64 WINEDEBUG=-all
# No Mono/Gecko download prompts (and no network) in a throwaway prefix.
export WINEDLLOVERRIDES="mscoree,mshtml="
# Nothing from the caller's environment stands in for the Credential Manager.
unset LINK_PEELER_DEVICE_ID LINK_PEELER_DEVICE_SECRET LINK_PEELER_PROFILE LINK_PEELER_CONFIG
wine wineboot -i </dev/null >"$work/wineboot.log" 2>&1 || { cat "$work/wineboot.log" >&2; fail "wineboot -i"; }
drive_c="$WINEPREFIX/drive_c"
if [ ! -f "$drive_c/windows/system32/bcryptprimitives.dll" ]; then
  # Test only: Rust's std needs ProcessPrng (bcryptprimitives.dll), which wine 8 lacks.
  command -v x86_64-w64-mingw32-gcc >/dev/null \
    || fail "wine lacks bcryptprimitives.dll and x86_64-w64-mingw32-gcc is missing to build the stub"
  x86_64-w64-mingw32-gcc -O2 -shared -o "$drive_c/windows/system32/bcryptprimitives.dll" \
    "$here/test/bcryptprimitives-stub.c" "$here/test/bcryptprimitives-stub.def" -ladvapi32
  pass "throwaway WINEPREFIX ($(wine --version 2>/dev/null), test-only bcryptprimitives.dll stub)"
else
  pass "throwaway WINEPREFIX ($(wine --version 2>/dev/null))"
fi
lp() { wine "$exe" "$@" </dev/null; }

# ---------------------------------------------------------------- relay and lab
db="$work/relay.db"
key_json="$("$relay_bin" --db "$db" --json keys create --name wine-check --test)" || fail "relay keys create"
code_json="$("$relay_bin" --db "$db" --json devices enroll --name wine-agent)" || fail "relay devices enroll"
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
key_id="$(field "$key_json" keyId)"
key_secret="$(field "$key_json" secret)"
code="$(field "$code_json" code)"

wait_line() { # file, pid, what: until the file has its first line (20 s)
  local tries=0
  until [ -f "$1" ] && [ "$(wc -l <"$1")" -ge 1 ]; do
    kill -0 "$2" 2>/dev/null || fail "$3 exited at start"
    [ "$tries" -lt 80 ] || fail "$3 did not start within 20 s"
    sleep 0.25; tries=$((tries + 1))
  done
}

NO_COLOR=1 "$relay_bin" --db "$db" --json serve --listen 127.0.0.1:0 >"$work/relay.out" 2>"$work/relay.log" &
relay_pid=$!
wait_line "$work/relay.out" "$relay_pid" relay
relay_url="$(field "$(head -1 "$work/relay.out")" url)"
pass "Linux relay on $relay_url (temp SQLite db, API key $key_id, one enrollment code)"

python3 "$here/test/redirect-lab.py" >"$work/lab.out" 2>"$work/lab.log" &
lab_pid=$!
wait_line "$work/lab.out" "$lab_pid" "redirect lab"
lab_port="$(head -1 "$work/lab.out")"
lab="http://127.0.0.1:$lab_port"
pass "redirect lab on $lab (/start 302 → /meta <meta refresh> → /final)"

# ---------------------------------------------------------------- enroll
lp enroll --relay "$relay_url" --code "$code" --name wine-agent >"$work/enroll.out" 2>&1 \
  || { cat "$work/enroll.out" >&2; fail "link-peeler.exe enroll"; }
device_id="$(tr -d '\r' <"$work/enroll.out" | sed -n 's/^Enrolled this computer as \([^ ]*\) with .*/\1/p')"
[ -n "$device_id" ] || { cat "$work/enroll.out" >&2; fail "enroll printed no device id"; }
pass "link-peeler.exe enroll --relay $relay_url --code … → device $device_id"

# wine's CredWriteW keeps each credential as a registry key named "Generic: <target>"
# under HKCU\Software\Wine\Credential Manager, the blob in an encrypted Password value.
# The keyring store's target is "<account>.<service>" = device:default.link-peeler.
cred_root='HKCU\Software\Wine\Credential Manager'
cred_key="$cred_root\\Generic: device:default.link-peeler"
wine reg query "$cred_key" </dev/null >"$work/cred.txt" 2>&1 \
  || fail "no credential $cred_key in wine's Credential Manager: $(wine reg query "$cred_root" </dev/null 2>&1 | tr -d '\r' | grep -v -i password | head -5)"
# Value names only (never the data).
names="$(tr -d '\r' <"$work/cred.txt" | awk 'NF >= 2 && $0 ~ /^    / { print $1 }' | sort | tr '\n' ' ')"
case " $names" in *" Password "*) ;; *) fail "$cred_key has no Password value (values: $names)" ;; esac
pass "the secret is in wine's Credential Manager: $cred_key (values: $names)"
# The stored JSON ({"deviceId":…,"deviceSecret":…}) must not sit in plain text anywhere in the prefix.
if grep -rlaq 'deviceSecret' "$WINEPREFIX"/*.reg "$drive_c/users" 2>/dev/null; then
  fail "the credential JSON is in plain text in the prefix: $(grep -rla deviceSecret "$WINEPREFIX"/*.reg "$drive_c/users")"
fi
pass "no plain-text credential in the registry files or the user profile"

status_json="$(lp status --json 2>"$work/status.err" | tr -d '\r' | tail -1)" || { cat "$work/status.err" >&2; fail "status --json"; }
python3 - "$status_json" "$device_id" "$relay_url" <<'EOF' || fail "status --json does not show the device enrolled: $status_json"
import json, sys
st, device, relay = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert st["enrolled"] is True, st
assert st["deviceId"] == device, st
assert st["credentialSource"] == "OS keychain", st
assert st["relay"].rstrip("/") == relay.rstrip("/"), st
assert st["relayReachable"] is True, st
# The Windows sensors ran: GetSystemPowerStatus answers under wine (mains
# power: "no"); wine has no WinRT connection cost, so metered is "unknown".
sensors = st["control"]["sensors"]
assert sensors == {"metered": "unknown", "onBattery": "no"}, sensors
EOF
pass "status --json under wine: enrolled as $device_id (OS keychain), relay reachable, sensors read (on battery: no, metered: unknown)"
status_text="$(lp status 2>&1 | tr -d '\r')" || fail "status: $status_text"
grep -q "^Enrolled: *yes, device $device_id (OS keychain)" <<<"$status_text" || fail "status: $status_text"
pass "status under wine: \"$(grep '^Enrolled:' <<<"$status_text" | tr -s ' ')\""

# ---------------------------------------------------------------- run --headless
wine "$exe" run --headless --allow-network 127.0.0.0/8 </dev/null >"$work/agent.log" 2>&1 &
agent_pid=$!

python3 - "$relay_url" "$key_id" "$key_secret" "$lab/start" "$job_timeout" >"$work/job.json" <<'EOF' || fail "job: $(cat "$work/job.json")"
import hashlib, hmac, json, sys, time, urllib.error, urllib.request, uuid
relay, key_id, secret, url, timeout = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])

def call(method, path, body=b""):
    # protocol.md §2: HMAC-SHA256 over "<timestamp>.<nonce>.<body>".
    ts, nonce = str(int(time.time())), str(uuid.uuid4())
    sig = hmac.new(secret.encode(), ts.encode() + b"." + nonce.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"X-Link-Peeler-Key": key_id, "X-Link-Peeler-Timestamp": ts,
               "X-Link-Peeler-Nonce": nonce, "X-Link-Peeler-Signature": sig}
    if body:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(relay.rstrip("/") + path, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)

body = json.dumps({"idempotencyKey": "wine-" + str(uuid.uuid4()), "trackingUrl": url,
                   "source": "agent-under-wine"}).encode()
status, job = call("POST", "/api/links/fetch", body)
if status != 202:
    print(json.dumps({"submit": status, "answer": job}))
    sys.exit(1)
deadline = time.monotonic() + timeout
while job.get("status") in ("queued", "leased") and time.monotonic() < deadline:
    time.sleep(0.5)
    status, job = call("GET", "/api/links/jobs/" + job["jobId"])
    if status != 200:
        print(json.dumps({"get": status, "answer": job}))
        sys.exit(1)
print(json.dumps(job))
EOF
job="$(cat "$work/job.json")"
pass "signed job for $lab/start submitted and polled (job $(field "$job" jobId))"
kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited (code $(wait "$agent_pid"; echo $?))"

python3 - "$job" "$lab" "$device_id" <<'EOF' || fail "job result: $job"
import json, sys
job, lab, device = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
def check(ok, what):
    print(("PASS" if ok else "FAIL") + "  wine agent: " + what, file=sys.stdout if ok else sys.stderr)
    if not ok:
        sys.exit(1)
check(job["status"] == "done", f"job status {job['status']} (want done)")
check(job.get("resolvedBy") == device, f"resolved by {job.get('resolvedBy')} (want {device})")
r = job["result"]
check(r["conclusion"] == "resolved", f"conclusion {r['conclusion']} (want resolved)")
kinds = [h.get("redirectKind") for h in r["hops"]]
urls = [h["url"] for h in r["hops"]]
check(len(r["hops"]) == 3, f"{len(r['hops'])} hops: {urls}")
check(kinds == ["location", "meta_refresh", None], f"redirect kinds {kinds} (want location, meta_refresh, none)")
check(urls == [lab + "/start", lab + "/meta", lab + "/final"], f"hop URLs {urls}")
check(r["finalUrl"].endswith("/final") and r["finalStatus"] == 200, f"final URL {r['finalUrl']} ({r['finalStatus']})")
EOF

status_json="$(lp status --json 2>/dev/null | tr -d '\r' | tail -1)" || true
python3 -c 'import json, sys; st = json.loads(sys.argv[1]); assert st["agentRunning"] and st["unsentResults"] == 0, st' \
  "$status_json" 2>/dev/null || fail "status --json while the agent runs: $status_json"
pass "status --json while run --headless is up: agent running, no unsent results"
devices="$("$relay_bin" --db "$db" --json devices list)" || fail "relay devices list"
python3 - "$devices" "$device_id" <<'EOF' || fail "relay devices list: $devices"
import json, sys
d = [x for x in json.loads(sys.argv[1])["devices"] if x["deviceId"] == sys.argv[2]]
assert d and d[0]["platform"] == "windows" and d[0]["lastSeenAt"], d
EOF
pass "the relay lists $device_id (platform windows, last seen)"

# ---------------------------------------------------------------- stop
stop "$agent_pid"; agent_pid=""
stop "$relay_pid"; relay_pid=""
stop "$lab_pid"; lab_pid=""
pass "agent, relay and lab stopped (the prefix is removed on exit) in $((SECONDS - started)) s"
