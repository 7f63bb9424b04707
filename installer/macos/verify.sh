#!/usr/bin/env bash
# What can be checked of the macOS installer without a Mac: every plist
# parses (python3 plistlib, as plutil -lint would), the distribution XML
# parses and names the component pkg, the shell scripts pass shellcheck, and
# build.sh --layout-only assembles the .app bundle and payload tree correctly.
#
#   installer/macos/verify.sh [--binary PATH]     (PATH: a stand-in binary to pack)
#
# Not checked here (needs macOS): lipo, codesign, pkgbuild, productbuild,
# installer(8), launchctl, and reading managed preferences through cfprefsd.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

pass() { printf 'PASS  macos: %s\n' "$*"; }
fail() { printf 'FAIL  macos: %s\n' "$*" >&2; exit 1; }

command -v shellcheck >/dev/null || fail "shellcheck is missing (apt-get install shellcheck)"
shellcheck "$here/build.sh" "$here/verify.sh" || fail "shellcheck build.sh verify.sh"
shellcheck -s sh "$here/scripts/preinstall" "$here/scripts/postinstall" "$here/uninstall.sh" \
  || fail "shellcheck preinstall postinstall uninstall.sh"
pass "shellcheck: build.sh, verify.sh, scripts/preinstall, scripts/postinstall, uninstall.sh"
for s in preinstall postinstall; do
  [ -x "$here/scripts/$s" ] || fail "scripts/$s is not executable"
done
pass "pre/postinstall scripts are executable"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
layout="$("$here/build.sh" --layout-only --out "$work/macos" "$@" 2>"$work/build.log" | tail -1)" \
  || { cat "$work/build.log" >&2; fail "build.sh --layout-only"; }
sed 's/^/      /' "$work/build.log"
pass "build.sh --layout-only assembled $(basename "$layout")/ (with a STAND-IN binary)"

python3 - "$here" "$layout" <<'EOF' || fail "plist/XML/layout checks (see above)"
import os, plistlib, sys
import xml.etree.ElementTree as ET

here, out = sys.argv[1], sys.argv[2]
BUNDLE_ID = "com.linkpeeler.agent"
app = os.path.join(out, "payload", "Applications", "Link Peeler.app")

def ok(msg):
    print(f"PASS  macos: {msg}")

def load(path):
    with open(path, "rb") as f:
        return plistlib.load(f)

for name in ["Info.plist", f"{BUNDLE_ID}.plist", "link-peeler.mobileconfig"]:
    load(os.path.join(here, name))
    ok(f"{name} parses as a property list")

info = load(os.path.join(app, "Contents", "Info.plist"))
assert info["CFBundleIdentifier"] == BUNDLE_ID, info
assert info["LSUIElement"] is True, "LSUIElement must be true (menu-bar app)"
assert info["CFBundlePackageType"] == "APPL"
assert "__VERSION__" not in info["CFBundleVersion"], info["CFBundleVersion"]
exe = os.path.join(app, "Contents", "MacOS", info["CFBundleExecutable"])
assert os.access(exe, os.X_OK), f"{exe} is not executable"
assert os.path.isfile(os.path.join(app, "Contents", "Resources", info["CFBundleIconFile"] + ".icns"))
with open(os.path.join(app, "Contents", "PkgInfo"), "rb") as f:
    assert f.read() == b"APPL????"
ok(f"Link Peeler.app: Info.plist (version {info['CFBundleVersion']}, LSUIElement), "
   "executable, icon, PkgInfo in place")

agent = load(os.path.join(out, "payload", "Library", "LaunchAgents", f"{BUNDLE_ID}.plist"))
assert agent["Label"] == BUNDLE_ID
prog = agent["ProgramArguments"][0]
assert prog == "/Applications/Link Peeler.app/Contents/MacOS/" + info["CFBundleExecutable"], prog
assert os.path.exists(os.path.join(out, "payload", prog.lstrip("/"))), prog
assert agent.get("RunAtLoad") is True and agent.get("LimitLoadToSessionType") == "Aqua"
assert "KeepAlive" not in agent, "no KeepAlive: a failing agent must not restart in a loop"
ok("LaunchAgent: per-user (Aqua), RunAtLoad, runs the bundle's executable, no KeepAlive")

profile = load(os.path.join(here, "link-peeler.mobileconfig"))
payload = profile["PayloadContent"][0]
assert profile["PayloadType"] == "Configuration" and profile["PayloadScope"] == "System"
assert payload["PayloadType"] == BUNDLE_ID, payload["PayloadType"]
assert isinstance(payload["RelayUrl"], str) and isinstance(payload["EnrollmentCode"], str)
ok(f"example .mobileconfig manages {BUNDLE_ID}: RelayUrl, EnrollmentCode")

tree = ET.parse(os.path.join(out, "distribution.xml"))
root = tree.getroot()
assert root.tag == "installer-gui-script", root.tag
refs = [r for r in root.iter("pkg-ref") if (r.text or "").strip()]
assert [r.text.strip() for r in refs] == ["link-peeler-component.pkg"], refs
assert refs[0].get("version") == info["CFBundleVersion"], refs[0].get("version")
choice_refs = {r.get("id") for c in root.iter("choice") for r in c.iter("pkg-ref")}
assert refs[0].get("id") in choice_refs
domains = root.find("domains")
assert domains.get("enable_localSystem") == "true" and domains.get("enable_currentUserHome") == "false"
ok("distribution.xml parses; one component pkg, same version, system-wide install")

for s in ("preinstall", "postinstall"):
    p = os.path.join(out, "scripts", s)
    assert os.access(p, os.X_OK), p
ok("scripts/ staged for pkgbuild --scripts")
EOF
