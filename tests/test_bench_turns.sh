#!/usr/bin/env bash
# scripts/bench_turns.py (bench_infer.sh's side by side with ONNX Runtime) and the
# --turns protocol of wk_bench_infer and tools/ort/bench.js:
#   - two stand-ins, one twice as slow per forward, give a ratio near 2 with A faster
#     in every turn, and each program's line counts its own times;
#   - a program that dies, hangs, or answers with the wrong number of times ends the
#     run with a message naming it;
#   - wk_bench_infer --turns on the shipped model answers each request with that many
#     times, ends at "0" and at EOF, refuses a bad request and a list of batch sizes;
#   - tools/ort/bench.js the same, where its node_modules are installed.
set -euo pipefail
src="${WHISKER_SOURCE_DIR:?}"
bench="${WK_BENCH_INFER:?}"
py="${WHISKER_PYTHON:-python3}"
command -v "$py" >/dev/null || { echo "test_bench_turns: no $py"; exit 77; }
drv="$src/scripts/bench_turns.py"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_bench_turns: $*"; exit 1; }

# a stand-in: MODE ok|die|hang|short, DELAY_MS per forward
cat > "$tmp/fake.py" <<'EOF'
import sys, time
mode, delay = sys.argv[1], float(sys.argv[2]) / 1e3
print("ready 1", flush=True)
if mode == "die":
    sys.exit(3)
for line in sys.stdin:
    n = int(line)
    if n == 0:
        break
    if mode == "hang":
        time.sleep(600)
    t = []
    for _ in range(2 + n):
        t0 = time.perf_counter(); time.sleep(delay); t.append((time.perf_counter() - t0) * 1e3)
    t = t[2:] if mode != "short" else t[3:]
    print(" ".join("%.4f" % x for x in t), flush=True)
EOF

out=$("$py" "$drv" 6 3 "$py" "$tmp/fake.py" ok 4 -- "$py" "$tmp/fake.py" ok 8)
echo "$out"
r=$(echo "$out" | awk '/^ratio/ {print $2}')
awk -v r="$r" 'BEGIN {exit !(r > 1.5 && r < 2.6)}' || fail "ratio $r, expected about 2"
echo "$out" | grep -q "A faster in 6 of 6" || fail "A not faster in every turn"
[ "$(echo "$out" | grep -c "^python")" = 2 ] || fail "expected a line per program"
# the slow one the other way round: ratio about 1/2, A faster in none
r=$("$py" "$drv" 4 2 "$py" "$tmp/fake.py" ok 8 -- "$py" "$tmp/fake.py" ok 4 | awk '/^ratio/ {print $2}')
awk -v r="$r" 'BEGIN {exit !(r > 0.38 && r < 0.67)}' || fail "reversed ratio $r, expected about 0.5"

for mode in die hang short; do
  if BENCH_TURNS_TIMEOUT=2 "$py" "$drv" 2 2 "$py" "$tmp/fake.py" "$mode" 1 -- \
      "$py" "$tmp/fake.py" ok 1 > /dev/null 2> "$tmp/err"; then
    fail "a program that does '$mode' was not an error"
  fi
  cat "$tmp/err"
  case "$mode" in
    die) grep -q "ended (exit 3)" "$tmp/err" || fail "no exit status for '$mode'" ;;
    hang) grep -q "gave no answer for 2.0 s" "$tmp/err" || fail "no timeout message" ;;
    short) grep -q "asked for 2 times, got 1" "$tmp/err" || fail "no count message" ;;
  esac
done

# wk_bench_infer --turns on the shipped model
model="$src/pretrained/default.safetensors"
out=$(printf '3\n1\n0\n' | "$bench" "$model" --batch 1 --turns --warmup 1 --threads 1)
echo "$out"
[ "$(echo "$out" | sed -n 1p)" = "ready 1" ] || fail "wk_bench_infer: no 'ready 1'"
[ "$(echo "$out" | sed -n 2p | wc -w)" = 3 ] || fail "wk_bench_infer: 3 times expected"
[ "$(echo "$out" | sed -n 3p | wc -w)" = 1 ] || fail "wk_bench_infer: 1 time expected"
[ "$(echo "$out" | wc -l)" = 3 ] || fail "wk_bench_infer: went on after 0"
printf '2\n' | "$bench" "$model" --batch 1 --turns --warmup 0 --threads 1 > "$tmp/o" ||
  fail "wk_bench_infer: EOF was not a clean end"
[ "$(wc -l < "$tmp/o")" = 2 ] || fail "wk_bench_infer: expected ready and one answer"
if printf 'x\n' | "$bench" "$model" --batch 1 --turns --warmup 0 --threads 1 > /dev/null 2> "$tmp/err"; then
  fail "wk_bench_infer: a bad request was accepted"
fi
grep -q "bad request" "$tmp/err" || fail "wk_bench_infer: no message for a bad request"
if "$bench" "$model" --batch 1,2 --turns < /dev/null > /dev/null 2>&1; then
  fail "wk_bench_infer: --turns with two batch sizes was accepted"
fi

# tools/ort/bench.js in turns, and the whole pair, where onnxruntime-node is installed
ort="$src/tools/ort"
if command -v node > /dev/null && [ -d "$ort/node_modules/onnxruntime-node" ]; then
  "$WHISKER_BIN" export "$model" "$tmp/m.onnx" > /dev/null
  out=$(printf '2\n' | node "$ort/bench.js" "$tmp/m.onnx" 1 1 1 turns 224)
  [ "$(echo "$out" | sed -n 1p)" = "ready 1" ] || fail "bench.js: no 'ready 1'"
  [ "$(echo "$out" | sed -n 2p | wc -w)" = 2 ] || fail "bench.js: 2 times expected"
  out=$("$py" "$drv" 2 2 "$bench" "$model" --batch 1 --turns --warmup 1 --threads 1 -- \
    node "$ort/bench.js" "$tmp/m.onnx" 1 1 1 turns 224)
  echo "$out"
  echo "$out" | grep -q "^ratio [0-9.]* (turns: " || fail "no ratio from the real pair"
else
  echo "test_bench_turns: onnxruntime-node not installed: bench.js not checked"
fi
echo "test_bench_turns: ok"
