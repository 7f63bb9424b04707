#!/usr/bin/env bash
# Renders the hand-written SVG icons in assets/icons/src/ into everything the
# tray and the installers need. Run it after editing an SVG and commit the
# outputs (the build embeds the PNGs; it never runs this script).
#
# Needs Debian's librsvg2-bin (rsvg-convert), imagemagick (convert) and
# icnsutils (png2icns).
#
#   assets/icons/png/<state>-<size>.png   tray icons, 16 22 24 32 48 64 px
#   assets/icons/app/link-peeler-<size>.png  app icon (the "idle" design)
#   assets/icons/app/link-peeler.ico      Windows installer / exe icon
#   assets/icons/app/link-peeler.icns     macOS bundle icon
#   assets/icons/preview.png              every state on a light and a dark panel
set -euo pipefail
cd "$(dirname "$0")/icons"

for tool in rsvg-convert convert png2icns; do
  command -v "$tool" >/dev/null || { echo "render.sh: $tool is missing (apt-get install librsvg2-bin imagemagick icnsutils)" >&2; exit 1; }
done

states=(working idle paused offline attention)
tray_sizes=(16 22 24 32 48 64)
app_sizes=(16 24 32 48 128 256 512)

mkdir -p png app
for s in "${states[@]}"; do
  for px in "${tray_sizes[@]}"; do
    rsvg-convert -w "$px" -h "$px" "src/$s.svg" -o "png/$s-$px.png"
  done
done

for px in "${app_sizes[@]}"; do
  rsvg-convert -w "$px" -h "$px" src/idle.svg -o "app/link-peeler-$px.png"
done
convert app/link-peeler-{16,24,32,48,256}.png app/link-peeler.ico
png2icns app/link-peeler.icns app/link-peeler-{16,32,48,128,256,512}.png >/dev/null

# A contact sheet for reviewing legibility: each state at 16/22/24/32 px on a
# light and a dark panel, magnified 4x without smoothing.
rows=()
for bg in '#f2f2f2' '#2b2b2b'; do
  cells=()
  for s in "${states[@]}"; do
    for px in 16 22 24 32; do cells+=("png/$s-$px.png"); done
  done
  row="$(mktemp --suffix=.png)"
  convert -background "$bg" "${cells[@]}" -gravity center -extent 36x36 +append "$row"
  rows+=("$row")
done
convert "${rows[@]}" -append -filter point -resize 400% preview.png
rm -f "${rows[@]}"
echo "rendered $(ls png | wc -l) tray PNGs, app icons, preview.png"
