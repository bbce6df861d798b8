#!/usr/bin/env bash
# test_faults_e2e.sh - `whisker train` under faults, on a small generated set
# (scripts/gen_shapes.py), smallcnn at 32 px:
#   1. SIGTERM mid-run saves a checkpoint and exits 1 with a message; --resume
#      ends with the same validation metrics and model as an uninterrupted run
#      (test_e2e.sh does the same for SIGINT and SIGKILL);
#   2. SIGINT does the same (checked here for the exit code and the message);
#   3. a run whose writes fail half-way (file size limit, SIGXFSZ ignored, so
#      write() returns EFBIG) exits 1 naming the file it could not write; the
#      previous checkpoint is unchanged and loadable, and --resume without the
#      limit finishes the run.
# Needs WHISKER_BIN (set by ctest) and /usr/bin/python3 with PIL (exit 77 without).
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
py=/usr/bin/python3
"$py" -c 'import PIL' 2>/dev/null || { echo "test_faults_e2e: no python3-pil: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_faults_e2e: FAIL: $*" >&2; exit 1; }
. "$src/tests/stop_lib.sh"
export WHISKER_THREADS=2

"$py" "$src/scripts/gen_shapes.py" "$tmp/data" --train 48 --val 12 > /dev/null
args=(--model smallcnn --size 32 --epochs 4 --batch 8 --lr 0.05 --seed 7 --workers 1)
"$bin" train "$tmp/data" --out "$tmp/straight" "${args[@]}" > /dev/null 2>&1 || fail "straight run"

# 1 and 2: a signal after the first checkpoint, then --resume
for sig in TERM INT; do
  run="$tmp/sig$sig"
  # the signal while the run is stopped at its first checkpoint (tests/stop_lib.sh);
  # it arrives once the run goes on, in epoch 2
  stop_at_checkpoint "$bin" train "$tmp/data" --out "$run" "${args[@]}" > /dev/null 2> "$run.err" &
  pid=$!
  [ -n "$(stopped_pid "$pid")" ] || { cat "$run.err"; fail "SIG$sig: the run did not stop at its first checkpoint"; }
  kill -"$sig" "$pid"
  kill -CONT "$pid"
  set +e; wait "$pid"; rc=$?; set -e
  [ "$rc" -eq 1 ] || { cat "$run.err"; fail "SIG$sig: exit code $rc, expected 1"; }
  grep -q "interrupted: checkpoint saved in $run/checkpoint.safetensors" "$run.err" \
    || { cat "$run.err"; fail "SIG$sig: no 'interrupted: checkpoint saved' message"; }
  "$bin" info "$run/checkpoint.safetensors" > /dev/null || fail "SIG$sig: checkpoint unreadable"
  "$bin" train "$tmp/data" --out "$run" "${args[@]}" --resume > /dev/null 2> "$run.err2" \
    || { cat "$run.err2"; fail "SIG$sig: resume"; }
  cmp <(cut -d, -f1,4,5 "$tmp/straight/metrics.csv") <(cut -d, -f1,4,5 "$run/metrics.csv") \
    || fail "SIG$sig: validation metrics differ after the resume"
  cmp "$tmp/straight/model.safetensors" "$run/model.safetensors" \
    || fail "SIG$sig: the final model differs after the resume"
  echo "SIG$sig: checkpoint saved, exit 1, resumed to the same model"
done

# 3. writes that fail half-way: a file size limit between the model's size and
# the checkpoint's (which holds the model and the optimizer state), so the
# second epoch's checkpoint is the file that cannot be written (a 2-epoch run,
# killed at its first checkpoint, then resumed under the limit: a resume keeps
# the run's own --epochs)
run="$tmp/efbig"
stop_at_checkpoint "$bin" train "$tmp/data" --out "$run" "${args[@]}" --epochs 2 > /dev/null \
  2> "$run.first.err" &
pid=$!
[ -n "$(stopped_pid "$pid")" ] || { cat "$run.first.err"; fail "the 2-epoch run did not stop"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
cp "$run/checkpoint.safetensors" "$tmp/ckpt.before"
ck=$(stat -c %s "$run/checkpoint.safetensors")
big=0
for f in model.safetensors metrics.csv report.html; do
  s=$(stat -c %s "$run/$f"); [ "$s" -gt "$big" ] && big=$s
done
[ "$big" -lt "$ck" ] || fail "no room between the other files ($big bytes) and the checkpoint ($ck)"
limit_kb=$(( (big + ck) / 2 / 1024 ))
set +e
( trap '' XFSZ; ulimit -f "$limit_kb"
  exec "$bin" train "$tmp/data" --out "$run" "${args[@]}" --epochs 2 --resume ) \
  > /dev/null 2> "$run.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || { cat "$run.err"; fail "write failure: exit code $rc, expected 1"; }
grep -q "$run/checkpoint.safetensors" "$run.err" && grep -q "File too large" "$run.err" \
  || { cat "$run.err"; fail "write failure: the message does not name the checkpoint and EFBIG"; }
cmp "$tmp/ckpt.before" "$run/checkpoint.safetensors" || fail "the previous checkpoint changed"
"$bin" info "$run/checkpoint.safetensors" > /dev/null || fail "the previous checkpoint is unreadable"
ls "$run" | grep -q '\.tmp\.' && fail "a temporary file was left behind"
"$bin" train "$tmp/data" --out "$run" "${args[@]}" --epochs 2 --resume > /dev/null 2>&1 \
  || fail "resume after the write failure"
[ "$(wc -l < "$run/metrics.csv")" -eq 3 ] || fail "metrics.csv should have 2 epochs after the resume"
echo "write failure: $(head -c 300 "$run.err")"
echo "test_faults_e2e: ok"
