#!/usr/bin/env bash
# Builds the macOS installer: a universal "Link Peeler.app", a LaunchAgent for
# every user, pre/postinstall scripts, and a signing-ready distribution pkg.
#
#   installer/macos/build.sh                 on a Mac: everything, into dist/macos/
#   installer/macos/build.sh --layout-only [--binary PATH]
#                                            anywhere: only the payload tree and the
#                                            filled-in files, for checking (no pkg)
#
# On a Mac it needs Xcode's command line tools (lipo, pkgbuild, productbuild)
# and rustup. Optional signing, both skipped when unset:
#   LP_CODESIGN_IDENTITY   "Developer ID Application: …"  (codesign the .app)
#   LP_INSTALLER_IDENTITY  "Developer ID Installer: …"    (productbuild --sign)
# Notarization (xcrun notarytool) is left to the release process: see README.md.
#
# --layout-only packs whatever --binary names (default: this machine's
# target/dist, target/release or target/debug link-peeler) and marks the bundle as a
# STAND-IN: a Linux binary in a .app proves the layout, nothing more.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

layout_only="" binary="" out="$root/dist/macos"
while [ $# -gt 0 ]; do
  case "$1" in
    --layout-only) layout_only=1; shift ;;
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--layout-only [--binary PATH]] [--out DIR]" >&2; exit 2 ;;
  esac
done
say() { printf 'macos: %s\n' "$*" >&2; }

if [ -z "$layout_only" ] && [ "$(uname -s)" != Darwin ]; then
  say "pkgbuild and productbuild exist only on macOS; use --layout-only here"
  exit 2
fi

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
bundle_id=com.linkpeeler.agent
app="Link Peeler.app"

rm -rf "$out"
mkdir -p "$out"
payload="$out/payload"
contents="$payload/Applications/$app/Contents"
mkdir -p "$contents/MacOS" "$contents/Resources" "$payload/Library/LaunchAgents"

# ---------------------------------------------------------------- binary
if [ -n "$layout_only" ]; then
  if [ -z "$binary" ]; then
    for candidate in "$root/target/dist/link-peeler" "$root/target/release/link-peeler" "$root/target/debug/link-peeler"; do
      [ -x "$candidate" ] && { binary="$candidate"; break; }
    done
  fi
  if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    say "no binary to pack (build one or pass --binary)"
    exit 1
  fi
  cp "$binary" "$contents/MacOS/link-peeler"
  printf 'STAND-IN: Contents/MacOS/link-peeler is %s, built for %s, not macOS.\nThis bundle only checks the layout (installer/macos/build.sh --layout-only).\n' \
    "$binary" "$(uname -sm)" >"$out/STAND-IN-BINARY.txt"
  say "layout only: packing $binary as a STAND-IN for the universal macOS binary"
else
  targets=(aarch64-apple-darwin x86_64-apple-darwin)
  rustup target add "${targets[@]}" >&2
  slices=()
  for t in "${targets[@]}"; do
    (cd "$root" && MACOSX_DEPLOYMENT_TARGET=11.0 cargo build --locked --profile dist --target "$t" --bin link-peeler >&2)
    slices+=("$root/target/$t/dist/link-peeler")
  done
  lipo -create -output "$contents/MacOS/link-peeler" "${slices[@]}"
  lipo -info "$contents/MacOS/link-peeler" >&2
fi
chmod 755 "$contents/MacOS/link-peeler"

# ---------------------------------------------------------------- bundle
sed "s/__VERSION__/$version/g" "$here/Info.plist" >"$contents/Info.plist"
printf 'APPL????' >"$contents/PkgInfo"
icns="$root/assets/icons/app/link-peeler.icns"
[ -f "$icns" ] || { say "missing $icns (render it with assets/render.sh)"; exit 1; }
cp "$icns" "$contents/Resources/link-peeler.icns"
cp "$here/$bundle_id.plist" "$payload/Library/LaunchAgents/$bundle_id.plist"
chmod 644 "$payload/Library/LaunchAgents/$bundle_id.plist"

mkdir -p "$out/scripts"
cp "$here/scripts/preinstall" "$here/scripts/postinstall" "$out/scripts/"
chmod 755 "$out/scripts/"*
sed "s/__VERSION__/$version/g" "$here/distribution.xml" >"$out/distribution.xml"

if [ -n "$layout_only" ]; then
  say "layout in $out (no pkg: pkgbuild/productbuild need macOS)"
  echo "$out"
  exit 0
fi

# ---------------------------------------------------------------- sign + pkg
if [ -n "${LP_CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --options runtime --sign "$LP_CODESIGN_IDENTITY" \
    "$payload/Applications/$app"
  codesign --verify --strict --verbose=2 "$payload/Applications/$app"
else
  say "LP_CODESIGN_IDENTITY unset: the .app is not signed"
fi
plutil -lint "$contents/Info.plist" "$payload/Library/LaunchAgents/$bundle_id.plist" >&2

pkgbuild --root "$payload" --scripts "$out/scripts" --identifier "$bundle_id.pkg" \
  --version "$version" --install-location / "$out/link-peeler-component.pkg" >&2
sign=()
if [ -n "${LP_INSTALLER_IDENTITY:-}" ]; then
  sign=(--sign "$LP_INSTALLER_IDENTITY")
else
  say "LP_INSTALLER_IDENTITY unset: the pkg is not signed (signing-ready: set it and rebuild)"
fi
pkg="$out/link-peeler-$version.pkg"
productbuild --distribution "$out/distribution.xml" --package-path "$out" \
  "${sign[@]}" "$pkg" >&2
say "built $pkg"
echo "$pkg"
