#!/usr/bin/env bash
# Checks the Debian package: its control data and file list (dpkg-deb), its
# .desktop files (desktop-file-validate), lintian, then — as root on a
# machine where link-peeler is not installed yet — dpkg -i, a run of the
# installed binary reading /etc/link-peeler/config.toml, and dpkg --purge.
#
#   installer/linux/verify.sh dist/link-peeler_<version>-1_amd64.deb
#
# Lintian tags accepted on purpose (see README.md): no-manual-page,
# initial-upload-closes-no-bugs. Any other error fails; warnings are shown.
set -euo pipefail
deb="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

pass() { printf 'PASS  linux: %s\n' "$*"; }
fail() { printf 'FAIL  linux: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIP  linux: %s\n' "$*"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- contents
info="$(dpkg-deb -I "$deb")"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = link-peeler ] || fail "Package: $(field Package)"
depends="$(field Depends)"
[[ ",$depends," == *", libayatana-appindicator3-1,"* || "$depends" == libayatana-appindicator3-1,* ]] \
  || fail "Depends lacks libayatana-appindicator3-1: $depends"
pass "dpkg-deb -I: $(field Package) $(field Version) $(field Architecture), Depends: $depends"
grep -q '^ */etc/link-peeler/config.toml$' <<<"$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" \
  || fail "/etc/link-peeler/config.toml is not a conffile"
pass "conffiles: /etc/link-peeler/config.toml (managed config), /etc/xdg/autostart/link-peeler.desktop"
[ -n "$info" ]

listing="$(dpkg-deb -c "$deb" | awk '{ print $1, $NF }')"
want=(
  "-rwxr-xr-x ./usr/bin/link-peeler"
  "-rwxr-xr-x ./usr/bin/link-peeler-tray"
  "-rw-r--r-- ./usr/share/applications/link-peeler.desktop"
  "-rw-r--r-- ./etc/xdg/autostart/link-peeler.desktop"
  "-rw-r--r-- ./etc/link-peeler/config.toml"
  "-rw-r--r-- ./usr/share/icons/hicolor/scalable/apps/link-peeler.svg"
)
for size in 16 24 32 48 128 256 512; do
  want+=("-rw-r--r-- ./usr/share/icons/hicolor/${size}x${size}/apps/link-peeler.png")
done
for w in "${want[@]}"; do
  grep -qxF -- "$w" <<<"$listing" || fail "dpkg-deb -c: missing $w"
done
pass "dpkg-deb -c: binary, menu entry, XDG autostart, managed config, hicolor icons (7 sizes + SVG)"

dpkg-deb -x "$deb" "$work/root"
desktop-file-validate "$work/root/usr/share/applications/link-peeler.desktop" \
  "$work/root/etc/xdg/autostart/link-peeler.desktop" || fail "desktop-file-validate"
pass "desktop-file-validate: menu entry and autostart entry"

if command -v lintian >/dev/null; then
  # --fail-on error: only errors fail; warnings are printed for the record.
  if ! lintian --fail-on error --suppress-tags no-manual-page,initial-upload-closes-no-bugs \
    "$deb" >"$work/lintian.txt" 2>&1; then
    cat "$work/lintian.txt" >&2
    fail "lintian reported errors"
  fi
  grep -v 'running with root privileges' "$work/lintian.txt" | sed 's/^/      lintian: /' || true
  pass "lintian: no errors (accepted: no-manual-page, initial-upload-closes-no-bugs)"
else
  skip "lintian is not installed"
fi

# ---------------------------------------------------------------- install
if [ "$(id -u)" != 0 ]; then
  skip "install/purge: needs root"
  exit 0
fi
if grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' link-peeler 2>/dev/null)"; then
  skip "install/purge: link-peeler is already installed on this machine; not touching it"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# What this script installs it removes, even when a check fails half-way:
# a package left behind would make the next run skip these checks.
trap 'dpkg --purge link-peeler >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
if ! dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then
  # Missing runtime dependencies: let apt bring them in and finish the install.
  apt-get install -f -y -qq --no-install-recommends >>"$work/dpkg.log" 2>&1 \
    || { cat "$work/dpkg.log" >&2; fail "dpkg -i (and apt-get install -f)"; }
fi
grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' link-peeler)" || fail "not installed"
pass "dpkg -i: installed"

version_out="$(/usr/bin/link-peeler --version)" || fail "link-peeler --version"
[ "$version_out" = "link-peeler $(field Version | sed 's/-[^-]*$//')" ] || fail "--version says: $version_out"
pass "link-peeler --version: $version_out"
# The command-line binary links no GUI library; the tray binary beside it does.
# (ldd's output is read whole first: `ldd | grep -q` under pipefail fails
# when grep exits at the first match and ldd dies writing the rest.)
cli_libs="$(ldd /usr/bin/link-peeler)" || fail "ldd /usr/bin/link-peeler"
tray_libs="$(ldd /usr/bin/link-peeler-tray)" || fail "ldd /usr/bin/link-peeler-tray"
if grep -qE 'libgtk|libgdk|appindicator' <<<"$cli_libs"; then
  fail "/usr/bin/link-peeler links a GUI library: $(grep -E 'libgtk|libgdk' <<<"$cli_libs" | head -2)"
fi
grep -q libgtk-3 <<<"$tray_libs" || fail "/usr/bin/link-peeler-tray does not link GTK"
pass "link-peeler loads $(wc -l <<<"$cli_libs") shared libraries, none of them GUI; link-peeler-tray (the tray) loads $(wc -l <<<"$tray_libs")"

# The installed agent reads /etc/link-peeler/config.toml (nothing managed as shipped).
home="$work/home"
mkdir -p "$home"
status() {
  env -i PATH=/usr/bin:/bin HOME="$home" XDG_CONFIG_HOME="$home/.config" \
    XDG_DATA_HOME="$home/.local/share" /usr/bin/link-peeler status --json 2>/dev/null || true
}
python3 - "$(status)" <<'EOF' || fail "status --json with the shipped template"
import json, sys
st = json.loads(sys.argv[1])
assert st["managedSettings"] == [] and st.get("managedSource") is None, st
EOF
cp /etc/link-peeler/config.toml "$work/config.toml.orig"
printf 'capacity = 3\nrelay = "https://relay.example.com"\n' >>/etc/link-peeler/config.toml
python3 - "$(status)" <<'EOF' || fail "status --json does not show the managed settings from /etc/link-peeler/config.toml"
import json, sys
st = json.loads(sys.argv[1])
assert st["managedSettings"] == ["relay", "capacity"], st
assert st["managedSource"] == "/etc/link-peeler/config.toml", st
assert st["relay"] == "https://relay.example.com/", st
EOF
pass "the installed agent reads /etc/link-peeler/config.toml (status --json: managed relay, capacity)"

dpkg --purge link-peeler >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg --purge"; }
for p in /usr/bin/link-peeler /usr/bin/link-peeler-tray /etc/link-peeler /etc/xdg/autostart/link-peeler.desktop \
  /usr/share/applications/link-peeler.desktop /usr/share/icons/hicolor/48x48/apps/link-peeler.png; do
  [ ! -e "$p" ] || fail "$p is still there after dpkg --purge"
done
pass "dpkg --purge: binary, desktop entries, icons and /etc/link-peeler (even edited) are gone"
