#!/usr/bin/env bash
# Builds the Windows MSI with wixl (Debian: wixl, msitools) from link-peeler.wxs.
#
#   installer/windows/build.sh [--exe PATH] [--profile dist|release|dev|PROFILE] [--out DIR] [--version X.Y.Z]
#
# The exe is cross-built for x86_64-pc-windows-gnu (rustup target + Debian's
# gcc-mingw-w64-x86-64) unless --exe names one. When the Rust target cannot be
# installed, the MSI is built around a STAND-IN payload (standin.c, compiled
# with mingw) so the package itself can still be built and checked; its file
# name says so (link-peeler-STANDIN-PAYLOAD-<version>-x64.msi) and it must
# never be shipped. The last line printed is the MSI's path.
#
# Environment: LP_WINDOWS_REQUIRE_REAL_EXE=1 turns the stand-in fallback into an error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target=x86_64-pc-windows-gnu

exe="" profile=dist out="$root/dist" version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --exe) exe="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    *) echo "usage: $0 [--exe PATH] [--profile dist|release|dev|PROFILE] [--out DIR] [--version X.Y.Z]" >&2; exit 2 ;;
  esac
done

say() { printf 'windows: %s\n' "$*" >&2; }
loud() {
  printf '\n' >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

for tool in wixl msibuild; do
  command -v "$tool" >/dev/null || { say "$tool is missing (apt-get install wixl msitools)"; exit 1; }
done

[ -n "$version" ] || version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
[ -n "$version" ] || { say "cannot read the version from Cargo.toml"; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

standin=""
if [ -z "$exe" ]; then
  if ! grep -qx "$target" <<<"$(rustup target list --installed 2>/dev/null)"; then
    say "installing the Rust target $target (rustup target add)"
    rustup target add "$target" >&2 || true
  fi
  if grep -qx "$target" <<<"$(rustup target list --installed 2>/dev/null)" \
    && command -v x86_64-w64-mingw32-gcc >/dev/null; then
    say "cross-building link-peeler.exe ($target, profile $profile)"
    (cd "$root" && cargo build --locked --target "$target" --profile "$profile" --bin link-peeler >&2)
    dir="$profile"; [ "$profile" = dev ] && dir=debug
    exe="$root/target/$target/$dir/link-peeler.exe"
  else
    if [ "${LP_WINDOWS_REQUIRE_REAL_EXE:-}" = 1 ]; then
      say "the Rust target $target (or x86_64-w64-mingw32-gcc) is not available and LP_WINDOWS_REQUIRE_REAL_EXE=1"
      exit 1
    fi
    command -v x86_64-w64-mingw32-gcc >/dev/null \
      || { say "x86_64-w64-mingw32-gcc is missing (apt-get install gcc-mingw-w64-x86-64)"; exit 1; }
    loud "The Rust target $target could not be installed on this machine." \
         "Building the MSI around a STAND-IN payload (installer/windows/test/standin.c)," \
         "NOT the agent. This MSI only proves the package; never ship it."
    x86_64-w64-mingw32-gcc -O2 -DSTANDIN_VERSION="\"$version\"" \
      -o "$stage/standin.exe" "$here/test/standin.c"
    exe="$stage/standin.exe"
    standin=1
  fi
fi
[ -f "$exe" ] || { say "no exe at $exe"; exit 1; }

# Icon: the app icon rendered by assets/render.sh (committed).
icon="$root/assets/icons/app/link-peeler.ico"
[ -f "$icon" ] || { say "missing $icon (render it with assets/render.sh)"; exit 1; }

# wixl resolves sources relative to the working directory: stage everything.
cp "$here/link-peeler.wxs" "$stage/"
cp "$exe" "$stage/link-peeler.exe"
# Debug info stays with the build (the release profile keeps line tables); ship it stripped.
if [ -z "$standin" ] && command -v x86_64-w64-mingw32-strip >/dev/null; then
  x86_64-w64-mingw32-strip "$stage/link-peeler.exe"
fi
cp "$icon" "$stage/link-peeler.ico"

name="link-peeler-$version-x64.msi"
[ -n "$standin" ] && name="link-peeler-STANDIN-PAYLOAD-$version-x64.msi"
mkdir -p "$out"
(cd "$stage" && wixl -a x64 -D Version="$version" -D ExeSource=link-peeler.exe \
  -D IconSource=link-peeler.ico -o "$name" link-peeler.wxs)

# What wixl 0.101 cannot express (see the comment in link-peeler.wxs):
# component conditions for the managed values, and RELAY_URL/ENROLLMENT_CODE
# as secure properties next to the upgrade properties wixl already lists.
secure="$(msiinfo export "$stage/$name" Property | awk -F'\t' '$1 == "SecureCustomProperties" { print $2 }')"
msibuild "$stage/$name" \
  -q "UPDATE \`Component\` SET \`Condition\` = 'RELAY_URL' WHERE \`Component\` = 'ManagedRelayUrl'" \
  -q "UPDATE \`Component\` SET \`Condition\` = 'ENROLLMENT_CODE' WHERE \`Component\` = 'ManagedEnrollmentCode'" \
  -q "UPDATE \`Property\` SET \`Value\` = 'ENROLLMENT_CODE;RELAY_URL${secure:+;$secure}' WHERE \`Property\` = 'SecureCustomProperties'"

mv "$stage/$name" "$out/$name"
say "built $out/$name ($(du -h "$out/$name" | cut -f1), payload: $([ -n "$standin" ] && echo STAND-IN || echo "$exe"))"
echo "$out/$name"
