#!/usr/bin/env bash
# scripts/ncu_summary.py on a hand-made ncu CSV (tests/fixtures/ncu/sample.csv): the program's
# own lines around the table are skipped, durations are summed per kernel (template instances
# apart, the argument list dropped), "usecond" is converted, another metric's rows are left
# out, and a file without such rows is refused.
set -euo pipefail
src="${WHISKER_SOURCE_DIR:?}"
py="${WHISKER_PYTHON:-python3}"
command -v "$py" >/dev/null || { echo "test_ncu_summary: no $py"; exit 77; }
out=$("$py" "$src/scripts/ncu_summary.py" "$src/tests/fixtures/ncu/sample.csv" --title t)
echo "$out"
want='t: 4 kernels, 6.0 ms of GPU time

| ms | share | calls | kernel |
|---:|---:|---:|---|
| 4.00 | 66.7% | 2 | `void a::bn_bw<float, 32>` |
| 1.50 | 25.0% | 1 | `void <unnamed>::k<(anonymous namespace)::Bf16>` |
| 0.50 | 8.3% | 1 | `void a::bn_bw<float, 64>` |'
[ "$out" = "$want" ] || { echo "test_ncu_summary: unexpected table"; exit 1; }
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
head -3 "$src/tests/fixtures/ncu/sample.csv" > "$tmp"
if "$py" "$src/scripts/ncu_summary.py" "$tmp" 2>"$tmp.err"; then
  echo "test_ncu_summary: a file with no rows was accepted"; exit 1
fi
grep -q "no gpu__time_duration.sum rows" "$tmp.err" || { cat "$tmp.err"; exit 1; }
rm -f "$tmp.err"
echo "test_ncu_summary: ok"
