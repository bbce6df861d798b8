#!/usr/bin/env bash
# report_chromium.sh - the training report as a browser shows it: writes the
# demo report (wk_report_demo), renders it with headless Chromium to a
# 1200x2000 screenshot and checks that the picture is real (over 20 KB, the
# window's size, many colours), then dumps the DOM and checks that the charts,
# the confusion table and the thumbnails are in it.
#
#   report_chromium.sh WK_REPORT_DEMO SOURCE_DIR
#
# Exit status: 0 pass, 1 fail, 77 (ctest's skip) when chromium or Python's PIL
# is missing. Needs no network and no display.
set -euo pipefail

demo="$1"
src="$2"
chromium_bin="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$chromium_bin" ]; then
  echo "report_chromium.sh: chromium not installed (apt-get install chromium); skipped"
  exit 77
fi
if ! /usr/bin/python3 -c 'import PIL' 2>/dev/null; then
  echo "report_chromium.sh: python3-pil not installed; skipped"
  exit 77
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/wk_report_chromium.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "report_chromium.sh: FAIL: $*" >&2; exit 1; }

"$demo" "$work/report.html" "$src/tests/fixtures/images" || fail "wk_report_demo failed"

# Chromium wants a writable home for its profile; keep it inside $work.
flags=(--headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile")
HOME="$work" timeout 120 "$chromium_bin" "${flags[@]}" --screenshot="$work/shot.png" \
  --window-size=1200,2000 "file://$work/report.html" >"$work/shot.log" 2>&1 ||
  { cat "$work/shot.log" >&2; fail "chromium --screenshot exited with an error"; }
[ -f "$work/shot.png" ] || { cat "$work/shot.log" >&2; fail "no screenshot written"; }
size=$(stat -c %s "$work/shot.png")
[ "$size" -gt 20000 ] || fail "screenshot is only $size bytes"
/usr/bin/python3 - "$work/shot.png" <<'PY' || fail "screenshot check"
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
assert im.size == (1200, 2000), f"screenshot is {im.size}, expected (1200, 2000)"
colours = im.getcolors(maxcolors=1 << 20)
n = len(colours) if colours is not None else 1 << 20
assert n > 50, f"only {n} distinct colours: a blank page?"
print(f"report_chromium.sh: screenshot {im.size[0]}x{im.size[1]}, {n} colours")
PY

HOME="$work" timeout 120 "$chromium_bin" "${flags[@]}" --dump-dom "file://$work/report.html" \
  >"$work/dom.html" 2>"$work/dom.log" ||
  { cat "$work/dom.log" >&2; fail "chromium --dump-dom exited with an error"; }
n_svg=$(grep -o '<svg' "$work/dom.html" | wc -l)
[ "$n_svg" -eq 2 ] || fail "the DOM has $n_svg <svg> elements, expected 2"
grep -q '<table class="confusion">' "$work/dom.html" || fail "no confusion table in the DOM"
n_img=$(grep -o '<img[^>]*src="data:image/jpeg;base64,' "$work/dom.html" | wc -l)
[ "$n_img" -ge 4 ] || fail "the DOM has $n_img thumbnails, expected 4"
grep -q '&lt;bird&gt;' "$work/dom.html" || fail "escaped class name missing from the DOM"
echo "report_chromium.sh: $size-byte screenshot, $n_svg charts, $n_img thumbnails: ok"
