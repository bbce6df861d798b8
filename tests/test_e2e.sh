#!/usr/bin/env bash
# test_e2e.sh - the application end to end on a synthetic set the project
# generates (scripts/gen_shapes.py: circles, squares, triangles):
#   1. whisker train reaches >= 95% validation accuracy in under a minute;
#   2. whisker eval and whisker classify agree with each other and with training;
#   3. a run killed with SIGKILL after its first checkpoint and resumed with --resume
#      ends with the same metrics as an uninterrupted run; so does one stopped
#      with SIGINT mid-epoch (which must save and exit);
#   3c. a resumed checkpoint with nothing to validate on is refused, not a crash;
#   3d. so is one whose image size or epochs are past what the options allow;
#   4. bad usage exits 2, a missing model exits 1 with a message, and so does a
#      run too short for the one-cycle schedule.
# Needs WHISKER_BIN (set by ctest) and /usr/bin/python3 with PIL (exit 77 without).
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
py=/usr/bin/python3
"$py" -c 'import PIL' 2>/dev/null || { echo "test_e2e: no python3-pil: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_e2e: FAIL: $*" >&2; exit 1; }
. "$src/tests/stop_lib.sh"
export WHISKER_THREADS=2

# 1. accuracy and time
"$py" "$src/scripts/gen_shapes.py" "$tmp/shapes" --train 200 --val 40
# (bash's time: wall, user and system seconds of the run)
t=$( { TIMEFORMAT='%R %U %S'; time "$bin" train "$tmp/shapes" --out "$tmp/run" --model smallcnn \
  --size 32 --epochs 15 --batch 32 --lr 0.1 --seed 3 > "$tmp/train.out" 2> "$tmp/train.err"; } \
  2>&1 ) || { cat "$tmp/train.err"; fail "train"; }
read -r secs user sys <<< "$t"
echo "trained in ${secs}s (CPU ${user}s user, ${sys}s system): $(cat "$tmp/train.out")"
# the limit of the issue; sanitizer and valgrind runs raise it (WHISKER_E2E_TIME_LIMIT). On
# a virtual machine whose host takes the cores away (steal time), the wall time says nothing
# of whisker: then the run must have needed under the limit of its 2 threads' CPU time
limit="${WHISKER_E2E_TIME_LIMIT:-60}"
if ! awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s < l) }'; then
  awk -v u="$user" -v y="$sys" -v l="$limit" 'BEGIN { exit !((u + y) / 2 < l) }' \
    || fail "training took ${secs}s (limit $limit) and ${user}s + ${sys}s of CPU"
  echo "over the limit in wall time only: the machine was busy (CPU time within it)"
fi
for f in model.safetensors checkpoint.safetensors metrics.csv report.html; do
  [ -s "$tmp/run/$f" ] || fail "missing $f"
done
[ "$(wc -l < "$tmp/run/metrics.csv")" -eq 16 ] || fail "metrics.csv should have 15 rows"
# the time each epoch waited for the loader: a part of the epoch's seconds
"$py" - "$tmp/run/metrics.csv" <<'EOF' || fail "metrics.csv: data_wait_s missing or out of range"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert rows and all(0.0 <= float(r["data_wait_s"]) <= float(r["seconds"]) + 0.01 for r in rows), rows
EOF
grep -Eq "epoch 15/15: .*\(([0-9]+)% waiting for data\)" "$tmp/train.err" || fail "no data wait in the epoch line"
[ "$(grep -c "<svg" "$tmp/run/report.html")" -ge 2 ] || fail "report.html has no curves"
grep -q "triangle" "$tmp/run/report.html" || fail "report.html lacks the class names"

# 2. eval vs classify
"$bin" eval "$tmp/shapes/val" --model "$tmp/run/model.safetensors" --json > "$tmp/eval.json"
acc=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$tmp/eval.json")
echo "eval accuracy $acc"
"$py" -c "import sys; sys.exit(0 if float('$acc') >= 0.95 else 1)" || fail "accuracy $acc < 0.95"
correct=0; total=0
for cls in circle square triangle; do
  while IFS=$'\t' read -r file rest; do
    total=$((total + 1))
    [ "${rest%% *}" = "$cls" ] && correct=$((correct + 1))
  done < <("$bin" classify "$tmp/shapes/val/$cls" --model "$tmp/run/model.safetensors")
done
"$py" -c "import sys; a=float('$acc'); sys.exit(0 if $total == 120 and abs($correct / $total - a) < 1e-9 else 1)" \
  || fail "classify: $correct/$total correct, eval says $acc"
best=$(grep -o "best validation accuracy [0-9.]*" "$tmp/train.out" | awk '{print $4}')
"$py" -c "import sys; sys.exit(0 if abs(float('$best') - float('$acc')) < 1e-4 else 1)" \
  || fail "eval accuracy $acc differs from training's best validation accuracy $best"

# 3. resume after SIGKILL and after SIGINT: same final metrics as straight through
"$py" "$src/scripts/gen_shapes.py" "$tmp/small" --train 40 --val 10
args=(--model smallcnn --size 32 --epochs 4 --batch 16 --lr 0.05 --seed 5)
"$bin" train "$tmp/small" --out "$tmp/straight" "${args[@]}" > /dev/null 2>&1 || fail "straight run"
# (the run stops itself at its first checkpoint, tests/stop_lib.sh, and is killed there)
stop_at_checkpoint "$bin" train "$tmp/small" --out "$tmp/killed" "${args[@]}" > /dev/null \
  2> "$tmp/killed.err" &
pid=$!
[ -n "$(stopped_pid "$pid")" ] || { cat "$tmp/killed.err"; fail "the run did not stop at its first checkpoint"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ "$(wc -l < "$tmp/killed/metrics.csv")" -lt 5 ] || fail "the killed run has all its epochs"
cp -r "$tmp/killed" "$tmp/damaged"
# resumed with another --seed and fewer --epochs than it has trained: the run keeps its own
# (the seed decides the split and the shuffle; fewer epochs once overran the metrics table)
"$bin" train "$tmp/small" --out "$tmp/killed" "${args[@]}" --seed 9 --epochs 1 --resume > /dev/null \
  2> "$tmp/resume.err" || { cat "$tmp/resume.err"; fail "resume after SIGKILL"; }
grep -q -- "--seed 5 (not 9), --epochs 4 (not 1)" "$tmp/resume.err" \
  || { cat "$tmp/resume.err"; fail "the resume did not name the settings it kept"; }
cmp <(cut -d, -f1-6 "$tmp/straight/metrics.csv") <(cut -d, -f1-6 "$tmp/killed/metrics.csv") \
  || fail "resumed after SIGKILL: metrics differ"
cmp "$tmp/straight/model.safetensors" "$tmp/killed/model.safetensors" \
  || fail "resumed after SIGKILL: the final model differs"
# a metrics.csv whose row holds huge values (each printed as ~300 digits): the table is
# rewritten whole (it once overran its buffer)
sed -i '2s/^1,[^,]*,[^,]*,[^,]*,/1,1e300,0.5,1e300,/' "$tmp/damaged/metrics.csv"
grep -q '^1,1e300' "$tmp/damaged/metrics.csv" || fail "could not damage metrics.csv"
"$bin" train "$tmp/small" --out "$tmp/damaged" "${args[@]}" --resume > /dev/null 2> "$tmp/dmg.err" \
  || { cat "$tmp/dmg.err"; fail "resume with a damaged metrics.csv"; }
[ "$(wc -l < "$tmp/damaged/metrics.csv")" -eq 5 ] || fail "damaged metrics.csv: not 4 rows after"
# (SIGINT while stopped at the first checkpoint, then SIGCONT: it arrives in epoch 2)
stop_at_checkpoint "$bin" train "$tmp/small" --out "$tmp/int" "${args[@]}" > /dev/null \
  2> "$tmp/int.err" &
pid=$!
[ -n "$(stopped_pid "$pid")" ] || { cat "$tmp/int.err"; fail "the run did not stop at its first checkpoint"; }
kill -INT "$pid"
kill -CONT "$pid"
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 1 ] || { cat "$tmp/int.err"; fail "SIGINT: exit code $rc, expected 1"; }
grep -q "interrupted: checkpoint saved" "$tmp/int.err" || { cat "$tmp/int.err"; fail "SIGINT: no message"; }
"$bin" info "$tmp/int/checkpoint.safetensors" > /dev/null || fail "checkpoint after SIGINT unreadable"
"$bin" train "$tmp/small" --out "$tmp/int" "${args[@]}" --resume > /dev/null 2>&1 || fail "resume after SIGINT"
# the checkpoint kept the interrupted epoch's training sums: every metric but the times
# is the straight run's
cmp <(cut -d, -f1-6 "$tmp/straight/metrics.csv") <(cut -d, -f1-6 "$tmp/int/metrics.csv") \
  || fail "resumed after SIGINT: metrics differ"
cmp "$tmp/straight/model.safetensors" "$tmp/int/model.safetensors" \
  || fail "resumed after SIGINT: the final model differs"

# ckpt_rewritten NAME PATTERN REPL: a copy of the straight run's checkpoint in $tmp/NAME
# whose header has PATTERN (a Python regex on bytes, matched exactly once) replaced by
# REPL, the header's length rewritten to fit (padded to 8 bytes again)
ckpt_rewritten() {
  mkdir -p "$tmp/$1"
  "$py" - "$tmp/straight/checkpoint.safetensors" "$tmp/$1/checkpoint.safetensors" "$2" "$3" \
    <<'EOF' || fail "could not rewrite the checkpoint for $1"
import re, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h, k = re.subn(sys.argv[3].encode(), sys.argv[4].encode(), b[8:8 + n].rstrip(b" "))
assert k == 1, k
h += b" " * (-len(h) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + b[8 + n:])
EOF
}

# 3b. a checkpoint that trained in fp16 (made so by rewriting its precision: the CPU cannot
# train in it) keeps it under --precision auto: resuming on the CPU fails saying why and how
ckpt_rewritten p16 '(precision\\?"\s*:\s*\\?")fp32' '\g<1>fp16'
set +e
"$bin" train "$tmp/small" --out "$tmp/p16" "${args[@]}" --epochs 5 --resume > /dev/null \
  2> "$tmp/p16.err"
rc=$?; set -e
[ "$rc" -eq 1 ] && grep -q "the checkpoint trained in fp16" "$tmp/p16.err" &&
  grep -q -- "--precision fp32" "$tmp/p16.err" || { cat "$tmp/p16.err"; fail "fp16 resume: rc $rc"; }

# 3c. a checkpoint whose validation share is 0 (rewritten so: the CLI allows 1 to 90),
# resumed on a folder with no val/ beside it: nothing to validate on, refused with a
# message (it once crashed)
ckpt_rewritten v0 '(val_pct\\?"\s*:\s*)20\b' '\g<1>0'
set +e
"$bin" train "$tmp/small/train" --out "$tmp/v0" "${args[@]}" --resume > /dev/null 2> "$tmp/v0.err"
rc=$?; set -e
[ "$rc" -eq 1 ] && grep -q "no validation images" "$tmp/v0.err" ||
  { cat "$tmp/v0.err"; fail "val_pct 0 resume: rc $rc"; }

# 3d. a checkpoint whose image size or epochs are past what --size and --epochs allow
# (rewritten so): refused as out of range, not a run that allocates images of 8192 px or
# plans ten million epochs (the epochs of the run's settings, whisker.run, not of the
# model's provenance, which names them too)
ckpt_rewritten big_size '("size\\?"\s*:\s*)32\b' '\g<1>8192'
ckpt_rewritten big_epochs '(crop_scale_min\\?"\s*:\s*[-+.0-9eE]+,\s*\\?"epochs\\?"\s*:\s*)4\b' \
  '\g<1>9999999'
for what in size epochs; do
  set +e
  # (a limit: ten million epochs accepted would train for days)
  timeout 120 "$bin" train "$tmp/small" --out "$tmp/big_$what" "${args[@]}" --resume > /dev/null \
    2> "$tmp/big.err"
  rc=$?; set -e
  [ "$rc" -eq 1 ] && grep -q "out-of-range setting" "$tmp/big.err" ||
    { cat "$tmp/big.err"; fail "$what past the CLI's limit, resumed: rc $rc"; }
done

# 4. usage and errors
set +e
"$bin" train > /dev/null 2>&1; [ $? -eq 2 ] || fail "train without arguments should exit 2"
"$bin" classify "$tmp/shapes/val" --model "$tmp/nope.safetensors" > /dev/null 2> "$tmp/err"
rc=$?
# a run too short for the one-cycle schedule (600 images, batch 256: 2 steps
# in one epoch) is refused before training, saying what to change
"$bin" train "$tmp/shapes" --out "$tmp/short" --model smallcnn --size 32 --epochs 1 --batch 256 \
  > /dev/null 2> "$tmp/short.err"
short_rc=$?
# ... and a fine-tuning whose second phase is too short, before its head trains
"$bin" finetune "$tmp/shapes" --from "$tmp/run/model.safetensors" --out "$tmp/short_ft" --size 32 \
  --epochs 3 --head-epochs 2 --batch 256 > /dev/null 2> "$tmp/short_ft.err"
short_ft_rc=$?
# a class folder whose name is not UTF-8 (a model file cannot hold it) is refused before
# training, not at the first save
cp -r "$tmp/small" "$tmp/badname"
for split in train val; do mv "$tmp/badname/$split/circle" "$tmp/badname/$split/$(printf 'ci\377rcle')"; done
"$bin" train "$tmp/badname" --out "$tmp/badname_run" "${args[@]}" > /dev/null 2> "$tmp/badname.err"
badname_rc=$?
# a class name with a terminal escape (valid UTF-8, so it trains, and a model file holds it)
# is printed escaped by classify, info and eval: the text output holds no ESC byte
cp -r "$tmp/small" "$tmp/esc"
esc=$(printf 'sq\033[31muare')
for split in train val; do mv "$tmp/esc/$split/square" "$tmp/esc/$split/$esc"; done
"$bin" train "$tmp/esc" --out "$tmp/esc_run" "${args[@]}" --epochs 1 > /dev/null 2>&1
esc_rc=$?
{ "$bin" classify "$tmp/esc/val/$esc" --model "$tmp/esc_run/model.safetensors" --top 3
  "$bin" info "$tmp/esc_run/model.safetensors"
  "$bin" eval "$tmp/esc/val" --model "$tmp/esc_run/model.safetensors"; } > "$tmp/esc.out" 2>&1
esc_out_rc=$?; set -e
[ "$esc_rc" -eq 0 ] && [ "$esc_out_rc" -eq 0 ] || { cat "$tmp/esc.out"; fail "escaped class name: rc $esc_rc, $esc_out_rc"; }
! grep -q $'\033' "$tmp/esc.out" || fail "an ESC byte reached the text output"
[ "$(grep -c 'sq\\x1b\[31muare' "$tmp/esc.out")" -ge 4 ] \
  || { cat "$tmp/esc.out"; fail "the escaped class name is not shown"; }
[ "$badname_rc" -eq 1 ] && grep -q "badname: class name 0 is not valid UTF-8" "$tmp/badname.err" \
  && ! grep -q "^epoch 1/" "$tmp/badname.err" \
  || { cat "$tmp/badname.err"; fail "a class name that is not UTF-8: rc $badname_rc"; }
[ "$short_ft_rc" -eq 1 ] && grep -q "the whole network's phase has 2 (1 epoch of 2 batches): more --epochs" "$tmp/short_ft.err" \
  && ! grep -q "^epoch 1/" "$tmp/short_ft.err" \
  || { cat "$tmp/short_ft.err"; fail "too short a fine-tuning phase: rc $short_ft_rc"; }
[ "$rc" -eq 1 ] && grep -q "nope.safetensors" "$tmp/err" || fail "missing model: rc $rc"
[ "$short_rc" -eq 1 ] && grep -q "one-cycle schedule needs at least 4 steps, and this run has 2 (1 epoch of 2 batches): more --epochs" "$tmp/short.err" \
  || { cat "$tmp/short.err"; fail "too short a run: rc $short_rc"; }
echo "test_e2e: ok"
