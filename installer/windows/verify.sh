#!/usr/bin/env bash
# Checks a Link Peeler MSI: its tables (msiinfo), then a silent install,
# upgrade and uninstall under wine in a throwaway WINEPREFIX.
#
#   installer/windows/verify.sh PATH/TO/link-peeler-<version>-x64.msi PATH/TO/link-peeler.exe
#
# The exe is the MSI's payload; the upgrade check packs it again, one patch
# version higher, with build.sh.
# Needs msitools (msiinfo, msibuild), wixl, wine (wine64) and
# gcc-mingw-w64-x86-64 (for the test-only bcryptprimitives stub). Headless:
# msiexec /qn needs no display. Exits non-zero on the first failed check.
# The awk programs below are single-quoted on purpose.
# shellcheck disable=SC2016
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 2 ] || { echo "usage: $0 MSI EXE" >&2; exit 2; }
msi="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
payload="$2"

pass() { printf 'PASS  windows: %s\n' "$*"; }
fail() { printf 'FAIL  windows: %s\n' "$*" >&2; exit 1; }

work="$(mktemp -d)"
cleanup() {
  if [ -n "${WINEPREFIX:-}" ] && command -v wineserver >/dev/null; then
    wineserver -k 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- tables
table() { msiinfo export "$msi" "$1" | tr -d '\r' | tail -n +4; }
row() { # table, awk condition, description
  table "$1" | awk -F'\t' "$2 { found = 1 } END { exit !found }" \
    || fail "$1 table: no row with $3"
  pass "$1 table: $3"
}
row File '$3 == "link-peeler.exe"' "link-peeler.exe"
row Directory '$1 == "INSTALLDIR" && $2 == "ProgramFiles64Folder" && $3 == "Link Peeler"' "INSTALLDIR = [ProgramFiles64Folder]Link Peeler"
row Registry '$3 == "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run" && $2 == 2 && $4 == "Link Peeler"' "HKLM …\\Run \"Link Peeler\""
row Registry '$3 == "SOFTWARE\\Policies\\Link Peeler" && $4 == "RelayUrl" && $5 == "[RELAY_URL]"' "HKLM Policies RelayUrl = [RELAY_URL]"
row Registry '$3 == "SOFTWARE\\Policies\\Link Peeler" && $4 == "EnrollmentCode" && $5 == "[ENROLLMENT_CODE]"' "HKLM Policies EnrollmentCode = [ENROLLMENT_CODE]"
row Component '$1 == "ManagedRelayUrl" && $5 == "RELAY_URL"' "ManagedRelayUrl installed only when RELAY_URL is set"
row Component '$1 == "ManagedEnrollmentCode" && $5 == "ENROLLMENT_CODE"' "ManagedEnrollmentCode installed only when ENROLLMENT_CODE is set"
row Component '$1 == "AgentExe" && $4 % 512 >= 256' "64-bit components"
row Shortcut '$2 == "ProgramMenuFolder" && $3 == "Link Peeler" && $5 == "[INSTALLDIR]link-peeler.exe"' "Start Menu shortcut to [INSTALLDIR]link-peeler.exe"
upgrade_code="$(table Property | awk -F'\t' '$1 == "UpgradeCode" { print $2 }')"
[ "$upgrade_code" = "{58DA48ED-9BC5-4C64-B455-FD84F22B99DF}" ] || fail "UpgradeCode is $upgrade_code"
pass "Property table: stable UpgradeCode $upgrade_code"
row Upgrade '$1 == "'"$upgrade_code"'" && $7 == "WIX_UPGRADE_DETECTED"' "major upgrade of older versions"
row Upgrade '$1 == "'"$upgrade_code"'" && $7 == "WIX_DOWNGRADE_DETECTED"' "downgrade detection"
row Property '$1 == "ALLUSERS" && $2 == "1"' "ALLUSERS=1 (per machine)"
row Property '$1 == "SecureCustomProperties" && $2 ~ /RELAY_URL/ && $2 ~ /ENROLLMENT_CODE/' "RELAY_URL and ENROLLMENT_CODE are secure properties"
row InstallExecuteSequence '$1 == "RemoveExistingProducts"' "RemoveExistingProducts scheduled"
# Windows masks these in verbose logs (wine 8 ignores MsiHiddenProperties, so only the row is checked).
row Property '$1 == "MsiHiddenProperties" && $2 ~ /ENROLLMENT_CODE/' "ENROLLMENT_CODE hidden from install logs"
grep -q 'x64;1033' <<<"$(msiinfo suminfo "$msi")" || fail "summary information: template is not x64;1033"
pass "summary information: x64;1033"

# ---------------------------------------------------------------- wine
command -v wine >/dev/null || fail "wine is missing (apt-get install wine wine64)"
export WINEPREFIX="$work/prefix" WINEARCH=win64 WINEDEBUG=-all
# No Mono/Gecko download prompts (and no network) in a throwaway prefix.
export WINEDLLOVERRIDES="mscoree,mshtml="
wine wineboot -i </dev/null >"$work/wineboot.log" 2>&1 || { cat "$work/wineboot.log" >&2; fail "wineboot"; }
drive_c="$WINEPREFIX/drive_c"

# Test only: Rust's std needs ProcessPrng (bcryptprimitives.dll), which wine 8 lacks.
x86_64-w64-mingw32-gcc -O2 -shared -o "$drive_c/windows/system32/bcryptprimitives.dll" \
  "$here/test/bcryptprimitives-stub.c" "$here/test/bcryptprimitives-stub.def" -ladvapi32
pass "test-only bcryptprimitives.dll stub in the throwaway prefix"

reg_value() { # key, value name → data, or nothing
  wine reg query "$1" /v "$2" 2>/dev/null | tr -d '\r' \
    | awk -F'    ' -v n="$2" '$2 == n { print $4 }'
}
msiexec_q() { # logged, silent
  local log="$1"; shift
  wine msiexec "$@" /qn /l*v "$(winepath -w "$work/$log")" </dev/null >/dev/null 2>&1 || {
    tail -40 "$work/$log" >&2 || true
    fail "msiexec $*"
  }
}

exe_dir="$drive_c/Program Files/Link Peeler"
run_key='HKLM\Software\Microsoft\Windows\CurrentVersion\Run'
policy_key='HKLM\Software\Policies\Link Peeler'
# Windows puts a per-machine shortcut in ProgramData's Start Menu; wine 8 resolves
# ProgramMenuFolder to the installing user's Start Menu even with ALLUSERS=1.
shortcut_present() {
  [ -n "$(find "$drive_c/ProgramData/Microsoft/Windows/Start Menu/Programs" "$drive_c/users" \
    -name 'Link Peeler.lnk' -path '*Start Menu/Programs/*' 2>/dev/null)" ]
}

relay="https://relay.example.com/"
code="WINE-TEST-CODE"
msiexec_q install.log /i "$msi" RELAY_URL="$relay" ENROLLMENT_CODE="$code"
pass "silent install (msiexec /i /qn RELAY_URL=… ENROLLMENT_CODE=…)"

[ -f "$exe_dir/link-peeler.exe" ] || fail "no $exe_dir/link-peeler.exe after install"
pass "installed C:\\Program Files\\Link Peeler\\link-peeler.exe"
shortcut_present || fail "no Start Menu shortcut after install"
pass "Start Menu shortcut"
[ "$(reg_value "$run_key" 'Link Peeler')" = '"C:\Program Files\Link Peeler\link-peeler.exe"' ] \
  || fail "Run entry: $(reg_value "$run_key" 'Link Peeler')"
pass "HKLM Run entry starts \"C:\\Program Files\\Link Peeler\\link-peeler.exe\" at every login"
[ "$(reg_value "$policy_key" RelayUrl)" = "$relay" ] || fail "managed RelayUrl: $(reg_value "$policy_key" RelayUrl)"
[ "$(reg_value "$policy_key" EnrollmentCode)" = "$code" ] || fail "managed EnrollmentCode missing"
pass "managed config in HKLM\\Software\\Policies\\Link Peeler (RelayUrl, EnrollmentCode)"

version_out="$(wine "C:\\Program Files\\Link Peeler\\link-peeler.exe" --version </dev/null 2>&1 | tr -d '\r')" \
  || fail "link-peeler.exe --version: $version_out"
pass "installed exe runs under wine: $version_out"
if [[ "$version_out" != *STAND-IN* ]]; then
  # The real agent reads the registry the MSI wrote (crates/agent/src/managed/).
  status="$(wine "C:\\Program Files\\Link Peeler\\link-peeler.exe" status --json </dev/null 2>/dev/null | tr -d '\r' | tail -1)"
  python3 - "$status" "$relay" <<'EOF' || fail "the agent does not see the MSI's managed config: $status"
import json, sys
st = json.loads(sys.argv[1])
assert st["relay"] == sys.argv[2], st
assert set(st["managedSettings"]) == {"relay", "enrollment_code"}, st
assert "Policies\\Link Peeler" in st["managedSource"], st
EOF
  pass "the installed agent reads the managed config from the registry (status --json: managedSettings relay, enrollment_code)"
fi

# Major upgrade: a newer build of the same MSI, installed without the properties,
# replaces the old product and keeps the managed config.
current="$(table Property | awk -F'\t' '$1 == "ProductVersion" { print $2 }')"
next="$(echo "$current" | awk -F. '{ printf "%d.%d.%d", $1, $2, $3 + 1 }')"
next_msi="$("$here/build.sh" --exe "$payload" --version "$next" --out "$work" 2>"$work/build-next.log" | tail -1)" \
  || { cat "$work/build-next.log" >&2; fail "cannot build the $next MSI for the upgrade check"; }
msiexec_q upgrade.log /i "$next_msi"
grep -aq "WIX_UPGRADE_DETECTED" "$work/upgrade.log" || fail "the upgrade did not detect the installed version"
products="$(wine reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s 2>/dev/null | tr -d '\r' | grep -c 'DisplayName *REG_SZ *Link Peeler$' || true)"
[ "$products" = 1 ] || fail "after the upgrade $products products named Link Peeler are registered (want 1)"
[ "$(reg_value "$policy_key" RelayUrl)" = "$relay" ] || fail "the upgrade lost the managed RelayUrl"
[ -f "$exe_dir/link-peeler.exe" ] || fail "the upgrade lost link-peeler.exe"
pass "major upgrade to $next without properties: one product registered, managed config kept"

msiexec_q uninstall.log /x "$next_msi"
pass "silent uninstall (msiexec /x /qn)"
[ ! -e "$exe_dir" ] || fail "$exe_dir still exists after uninstall"
if shortcut_present; then fail "the Start Menu shortcut survived the uninstall"; fi
[ -z "$(reg_value "$run_key" 'Link Peeler')" ] || fail "the Run entry survived the uninstall"
if wine reg query "$policy_key" >/dev/null 2>&1; then fail "$policy_key survived the uninstall"; fi
if wine reg query 'HKLM\Software\Link Peeler' >/dev/null 2>&1; then fail "HKLM\\Software\\Link Peeler survived the uninstall"; fi
pass "nothing left after uninstall: no files, shortcut, Run entry or managed config"
