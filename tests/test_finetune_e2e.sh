#!/usr/bin/env bash
# test_finetune_e2e.sh - fine-tuning and the learning-rate finder, end to end on
# generated shapes (scripts/gen_shapes.py):
#   1. a smallcnn trained on circles/squares/triangles is fine-tuned on a new
#      two-class problem: the model has the new classes, its provenance names
#      the base, and it is accurate;
#   2. a fine-tuning run killed after its head phase and resumed ends with the
#      same model as one run straight through (the phase switch survives);
#   3. --lr-find leaves no trace: a run with it equals a run at the rate it
#      suggested (weights and batchnorm statistics are restored after the sweep).
# Needs WHISKER_BIN (set by ctest) and /usr/bin/python3 with PIL (exit 77 without).
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
py=/usr/bin/python3
"$py" -c 'import PIL' 2>/dev/null || { echo "test_finetune_e2e: no python3-pil: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_finetune_e2e: FAIL: $*" >&2; exit 1; }
. "$src/tests/stop_lib.sh"
export WHISKER_THREADS=2

# 1. base model, then a new head for two of the classes
"$py" "$src/scripts/gen_shapes.py" "$tmp/shapes" --train 200 --val 40 > /dev/null
"$bin" train "$tmp/shapes" --out "$tmp/base" --model smallcnn --size 32 --epochs 12 --batch 32 \
  --lr 0.1 --seed 3 > /dev/null 2> "$tmp/base.err" || { cat "$tmp/base.err"; fail "base training"; }
mkdir -p "$tmp/two/train" "$tmp/two/val"
for s in train val; do
  cp -r "$tmp/shapes/$s/circle" "$tmp/shapes/$s/triangle" "$tmp/two/$s/"
done
ft=(--from "$tmp/base/model.safetensors" --epochs 4 --head-epochs 1 --batch 32 --seed 4 --lr 0.01)
"$bin" finetune "$tmp/two" --out "$tmp/ft" "${ft[@]}" > "$tmp/ft.out" 2> "$tmp/ft.err" \
  || { cat "$tmp/ft.err"; fail "finetune"; }
echo "finetune: $(cat "$tmp/ft.out")"
grep -q "whole network" "$tmp/ft.err" || fail "no switch from the head phase to the whole network"
"$bin" info "$tmp/ft/model.safetensors" > "$tmp/info"
grep -q "classes *2: circle, triangle" "$tmp/info" || fail "fine-tuned classes: $(grep classes "$tmp/info")"
grep -q "base_model" "$tmp/info" || fail "provenance does not name the base model"
"$bin" eval "$tmp/two/val" --model "$tmp/ft/model.safetensors" --json > "$tmp/eval.json"
acc=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$tmp/eval.json")
echo "fine-tuned accuracy $acc"
"$py" -c "import sys; sys.exit(0 if float('$acc') >= 0.9 else 1)" || fail "accuracy $acc < 0.9"
# the same through train --pretrained (into a run folder whose parents do not exist yet)
"$bin" train "$tmp/two" --out "$tmp/deep/er/ft2" --pretrained "$tmp/base/model.safetensors" --epochs 4 \
  --head-epochs 1 --batch 32 --seed 4 --lr 0.01 > /dev/null 2>&1 || fail "train --pretrained"
cmp "$tmp/ft/model.safetensors" "$tmp/deep/er/ft2/model.safetensors" \
  || fail "train --pretrained differs from finetune --from"

# 2. killed after the head phase's checkpoint, resumed: the same model
# (the run stops itself at its first checkpoint, tests/stop_lib.sh, and is killed there)
stop_at_checkpoint "$bin" finetune "$tmp/two" --out "$tmp/killed" "${ft[@]}" > /dev/null \
  2> "$tmp/killed.err" &
pid=$!
[ -n "$(stopped_pid "$pid")" ] || { cat "$tmp/killed.err"; fail "the run did not stop at its first checkpoint"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ "$(wc -l < "$tmp/killed/metrics.csv")" -le 2 ] || fail "the killed run went past its head phase"
# resumed as plain `train --resume`, none of the fine-tuning flags given: the checkpoint
# keeps the run's settings (base model, phases, seed, rate, size), so the head phase ends
# and the whole network trains as in the straight run
"$bin" train "$tmp/two" --out "$tmp/killed" --batch 32 --resume > /dev/null 2> "$tmp/resume.err" \
  || { cat "$tmp/resume.err"; fail "resume after SIGKILL"; }
grep -q "resuming with the run's own settings" "$tmp/resume.err" \
  || { cat "$tmp/resume.err"; fail "the resume did not say it kept the run's settings"; }
cmp <(cut -d, -f1-6 "$tmp/ft/metrics.csv") <(cut -d, -f1-6 "$tmp/killed/metrics.csv") \
  || fail "resumed fine-tuning: metrics differ"
cmp "$tmp/ft/model.safetensors" "$tmp/killed/model.safetensors" \
  || fail "resumed fine-tuning: the final model differs"

# 3. --lr-find, then the same run at the suggested rate without it
"$py" "$src/scripts/gen_shapes.py" "$tmp/lr" --train 160 --val 20 > /dev/null
lf=(--model smallcnn --size 32 --epochs 2 --batch 16 --seed 6)
"$bin" train "$tmp/lr" --out "$tmp/lrf" "${lf[@]}" --lr-find > /dev/null 2> "$tmp/lrf.err" \
  || { cat "$tmp/lrf.err"; fail "--lr-find run"; }
[ "$(wc -l < "$tmp/lrf/lr_find.csv")" -ge 20 ] || fail "lr_find.csv is too short"
rate=$(sed -n 's/^lr-find: suggested learning rate \([^ ]*\) .*/\1/p' "$tmp/lrf.err")
if [ -n "$rate" ]; then
  "$bin" train "$tmp/lr" --out "$tmp/plain" "${lf[@]}" --lr "$rate" > /dev/null 2>&1 \
    || fail "run at the suggested rate $rate"
  cmp "$tmp/lrf/model.safetensors" "$tmp/plain/model.safetensors" \
    || fail "--lr-find changed the run beyond its rate $rate (the sweep was not undone)"
  echo "lr-find suggested $rate; the run equals one at that rate"
else
  # a curve with no descent keeps the default rate, with a warning
  grep -q "training at the default rate" "$tmp/lrf.err" || { cat "$tmp/lrf.err"; fail "lr-find"; }
  "$bin" train "$tmp/lr" --out "$tmp/plain" "${lf[@]}" > /dev/null 2>&1 || fail "plain run"
  cmp "$tmp/lrf/model.safetensors" "$tmp/plain/model.safetensors" \
    || fail "--lr-find without a suggestion changed the run"
  echo "lr-find found no descent; the run equals the default one"
fi
echo "test_finetune_e2e: ok"
