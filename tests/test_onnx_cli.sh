#!/usr/bin/env bash
# test_onnx_cli.sh - whisker import/export from the command line, on the ONNX
# Model Zoo's int8 MobileNetV2 ($WHISKER_DATA/pretrained; exit 77 without it):
#   1. import with --labels writes a model that info, classify and eval load;
#      classify names a cat photo a cat (an ImageNet cat class, 281-285);
#   2. export then import gives the same classification, class names included;
#   3. a truncated file and a missing file exit 1 with a message naming the
#      file; bad usage exits 2; a label file of the wrong length exits 1, one
#      with a byte order mark and CRLF line ends reads as the plain one, and one
#      with a line that is not UTF-8 exits 1 naming the line and class.
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
data="${WHISKER_DATA:-$src/../shared/data}"
pre="$data/pretrained"
[ -f "$pre/mobilenetv2-12-int8.onnx" ] || { echo "test_onnx_cli: $pre missing: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_onnx_cli: FAIL: $*" >&2; exit 1; }
export WHISKER_THREADS=2

# 1. import, info, classify, eval
"$bin" import "$pre/mobilenetv2-12-int8.onnx" "$tmp/m.safetensors" --labels "$pre/synset.txt"
"$bin" info "$tmp/m.safetensors" > "$tmp/info.txt"
grep -q "^classes     1000: n01440764 tench" "$tmp/info.txt" || fail "info: class names"
grep -q '"sha256":"cc028fe6' "$tmp/info.txt" || fail "info: provenance without the sha256"
grep -q "centre crop 224" "$tmp/info.txt" || fail "info: preprocessing"
cat_photo="$data/samples/skimage_chelsea.jpg"
"$bin" classify "$cat_photo" --model "$tmp/m.safetensors" --top 1 > "$tmp/cls.txt"
cat "$tmp/cls.txt"
grep -Eq "n0212(3045|3159|3394|3597|4075) " "$tmp/cls.txt" || fail "the cat photo is not a cat"
mkdir -p "$tmp/ds/n01440764 tench, Tinca tinca"
cp "$cat_photo" "$tmp/ds/n01440764 tench, Tinca tinca/"
# eval wants a folder per model class: it must load the model and refuse the
# 1-class folder with a clear message
if "$bin" eval "$tmp/ds" --model "$tmp/m.safetensors" 2> "$tmp/eval.err"; then
  fail "eval accepted 1 class for a 1000-class model"
fi
grep -q "the model 1000" "$tmp/eval.err" || fail "eval: $(cat "$tmp/eval.err")"

# 2. export and back
"$bin" export "$tmp/m.safetensors" "$tmp/m.onnx"
"$bin" import "$tmp/m.onnx" "$tmp/back.safetensors"
"$bin" classify "$cat_photo" --model "$tmp/back.safetensors" --top 1 > "$tmp/cls2.txt"
cmp -s "$tmp/cls.txt" "$tmp/cls2.txt" || fail "export+import changed the answer: $(cat "$tmp/cls2.txt")"

# 3. errors
head -c 100000 "$pre/mobilenetv2-12-int8.onnx" > "$tmp/cut.onnx"
if "$bin" import "$tmp/cut.onnx" "$tmp/x.safetensors" 2> "$tmp/err"; then fail "truncated file accepted"; fi
grep -q "cut.onnx: not an ONNX model" "$tmp/err" || fail "truncated: $(cat "$tmp/err")"
[ ! -e "$tmp/x.safetensors" ] || fail "a failed import wrote its output"
rc=0; "$bin" import "$tmp/none.onnx" "$tmp/x.safetensors" 2> "$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "none.onnx" "$tmp/err" || fail "missing file: rc $rc"
rc=0; "$bin" import "$tmp/m.onnx" 2> /dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "usage error exits $rc"
head -5 "$pre/synset.txt" > "$tmp/five.txt"
rc=0; "$bin" import "$tmp/m.onnx" "$tmp/x.safetensors" --labels "$tmp/five.txt" 2> "$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "5 labels for a model with 1000 classes" "$tmp/err" || fail "labels: rc $rc"
# a labels file as Windows editors save it (byte order mark, CRLF) reads as
# the plain one; a line that is not UTF-8 is refused naming the line and class
{ printf '\xef\xbb\xbf'; sed 's/$/\r/' "$pre/synset.txt"; } > "$tmp/crlf.txt"
"$bin" import "$tmp/m.onnx" "$tmp/crlf.safetensors" --labels "$tmp/crlf.txt"
"$bin" info "$tmp/crlf.safetensors" > "$tmp/info.txt"
grep -q "^classes     1000: n01440764 tench, Tinca tinca, n01443537" "$tmp/info.txt" ||
  fail "labels with a byte order mark and CRLF: $(grep classes "$tmp/info.txt" | cut -c1-80)"
sed '3s/.*/caf\xe9/' "$pre/synset.txt" > "$tmp/latin1.txt"
rc=0; "$bin" import "$tmp/m.onnx" "$tmp/x.safetensors" --labels "$tmp/latin1.txt" 2> "$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "latin1.txt: line 3: class name 2 is not valid UTF-8" "$tmp/err" ||
  fail "a label that is not UTF-8: rc $rc: $(cat "$tmp/err")"
[ ! -e "$tmp/x.safetensors" ] || fail "a refused label file wrote the model"
echo "test_onnx_cli: ok"
