#!/usr/bin/env bash
# mpich_check.sh - whisker built against MPICH (Debian's mpich + libmpich-dev)
# trains with several ranks on the CPU under MPICH's Hydra launcher and ends
# where tests/test_dist_train.sh says a 2-rank run must (it checks Open MPI):
#
#   build  configure with -DMPI_C_COMPILER=mpicc.mpich: CMake finds libmpich
#          (not Open MPI) and libwhisker-mpi.so links it; the MPI plugin builds
#          with the project's own flags (-Werror). If only -Werror stops it, the
#          warnings are shown and the tree is rebuilt with -DWHISKER_WERROR=OFF,
#          so that the runs below are still checked (the build case stays FAIL);
#   a      `mpiexec.mpich -n 2 whisker train --batch 8 --sync-bn` (the user's own
#          launcher) ends with the weights of one process with --batch 16 and
#          the same seed, within 3x the engine's noise floor (the same one-process
#          run with 2 threads instead of 1; and 1e-3 anyway), and the same
#          per-epoch metrics (test_dist_train.sh's case 1);
#   b      the same started by whisker itself: WHISKER_MPIRUN=mpiexec.mpich
#          whisker train --procs 2 (launch.c tells Hydra from `--version` and
#          passes `-np 2 -bind-to none`, seen through a logging wrapper).
#
#   bash scripts/mpich_check.sh [BUILD_DIR]      (default /tmp/wk-mpich)
#
# Builds outside the repository, data in a temporary folder (the synthetic
# shapes of test_dist_train.sh); about a minute on 2 cores. Prints PASS/FAIL
# per case, exits 1 if any failed, 77 without mpiexec.mpich/mpicc.mpich or
# without /usr/bin/python3 with numpy and PIL. KEEP=1 keeps the run folders.
# The default mpirun (Open MPI, say) is neither used nor changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-/tmp/wk-mpich}"
py=/usr/bin/python3
mpiexec=$(command -v mpiexec.mpich || true)
mpicc=$(command -v mpicc.mpich || true)
if [ -z "$mpiexec" ] || [ -z "$mpicc" ]; then
  echo "mpich_check: mpiexec.mpich or mpicc.mpich not installed (apt-get install mpich" \
    "libmpich-dev): skipped"
  exit 77
fi
"$py" -c 'import PIL, numpy' 2>/dev/null || { echo "mpich_check: no PIL/numpy: skipped"; exit 77; }
unset WHISKER_THREADS WHISKER_MPIRUN WHISKER_MPI_PLUGIN WHISKER_MPI_CHUNK
export PYTHONDONTWRITEBYTECODE=1
tmp=$(mktemp -d)
cleanup() { [ -n "${KEEP:-}" ] && echo "mpich_check: runs kept in $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT
failed=0
pass() { echo "mpich_check: PASS: $*"; }
fail() { echo "mpich_check: FAIL: $*"; failed=1; }
die() { echo "mpich_check: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "mpich_check: $("$mpiexec" --version | sed -n 's/^ *Version: *//p' | head -1 |
  sed 's/^/MPICH Hydra /'), $("$mpicc" -show | head -c 200)"

# ---------------------------------------------------------------- build
configure() {
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWHISKER_CUDA=OFF \
    -DWHISKER_MPI=ON -DMPI_C_COMPILER="$mpicc" -DWHISKER_WERROR="$1" > "$tmp/configure.log" 2>&1 \
    || { cat "$tmp/configure.log"; die "cmake configure"; }
}
compile() { cmake --build "$build" -j2 --target whisker_cli whisker_mpi_plugin > "$tmp/build.log" 2>&1; }
configure ON
found=$(grep "whisker: MPI " "$tmp/configure.log" || true)
echo "mpich_check: configure: ${found#-- }"
case "$found" in
  *found*libmpich*) ;;
  *) die "CMake did not find MPICH's libmpich (see the line above)" ;;
esac
t0=$(now)
if compile; then
  pass "build: whisker and libwhisker-mpi.so against MPICH with -Werror ($(secs "$t0" "$(now)") s)"
else
  grep -E "error|warning" "$tmp/build.log" | grep -v "^gmake" | head -20
  fail "build with the project's flags (-Werror): see the errors above; rebuilding with" \
    "-DWHISKER_WERROR=OFF to check the runs"
  configure OFF
  compile || { tail -30 "$tmp/build.log"; die "build without -Werror"; }
fi
bin="$build/whisker"
plugin="$build/libwhisker-mpi.so"
[ -x "$bin" ] && [ -e "$plugin" ] || die "no $bin or $plugin after the build"
libs=$(ldd "$plugin")
echo "$libs" | grep -q "libmpich" || die "libwhisker-mpi.so does not link libmpich: $libs"
echo "$libs" | grep -q "libmpi\.so" && die "libwhisker-mpi.so links Open MPI's libmpi: $libs"
echo "mpich_check: libwhisker-mpi.so -> $(echo "$libs" | grep -o 'libmpich[^ ]* => [^ ]*')"

# ---------------------------------------------------------------- runs
"$py" "$root/scripts/gen_shapes.py" "$tmp/shapes" --train 64 --val 24 > /dev/null
common=("$tmp/shapes" --model smallcnn --size 32 --lr 0.002 --seed 3 --workers 1)
# judge CASE RUN SECONDS: RUN against the single-process run, as
# test_dist_train.sh (scripts/ddp_same.py: the weights within the noise floor,
# metrics.csv alike)
judge() {
  local name=$1 run=$2 t=$3 out
  if ! grep -q "data parallel: 2 ranks (mpi)" "$run.err"; then
    cat "$run.err"
    fail "$name: no 'data parallel: 2 ranks (mpi)' line in the log"
    return
  fi
  if out=$("$py" "$root/scripts/ddp_same.py" --metrics "$tmp/one" "$tmp/one_t2" "$run" 2>&1); then
    echo "mpich_check: $name: $out; ${t} s"
    pass "$name"
  else
    echo "$out"
    fail "$name: did not end where one process of batch 16 did"
  fi
}

t0=$(now)
"$bin" train "${common[@]}" --epochs 2 --batch 16 --threads 1 --out "$tmp/one" \
  > /dev/null 2> "$tmp/one.err" || { cat "$tmp/one.err"; die "single-process run"; }
echo "mpich_check: one process, batch 16: $(secs "$t0" "$(now)") s"
"$bin" train "${common[@]}" --epochs 2 --batch 16 --threads 2 --out "$tmp/one_t2" \
  > /dev/null 2> "$tmp/one_t2.err" || { cat "$tmp/one_t2.err"; die "single-process run, 2 threads"; }

# a. the user's own launcher
t0=$(now)
rc=0
timeout 300 "$mpiexec" -n 2 "$bin" train "${common[@]}" --epochs 2 --batch 8 --sync-bn \
  --threads 1 --out "$tmp/a" > "$tmp/a.out" 2> "$tmp/a.err" || rc=$?
t=$(secs "$t0" "$(now)")
if [ "$rc" -ne 0 ]; then
  cat "$tmp/a.err"
  fail "a: mpiexec.mpich -n 2 whisker train exited $rc"
else
  judge "a (mpiexec.mpich -n 2 whisker train)" "$tmp/a" "$t"
fi

# b. whisker's own --procs 2 with $WHISKER_MPIRUN naming MPICH's mpiexec,
# through a wrapper that logs the command line whisker gives it (Hydra's flags)
cat > "$tmp/launcher.sh" <<EOF
#!/bin/sh
echo "\$*" >> "$tmp/launcher.log"
exec "$mpiexec" "\$@"
EOF
chmod +x "$tmp/launcher.sh"
t0=$(now)
rc=0
WHISKER_MPIRUN="$tmp/launcher.sh" timeout 300 "$bin" train "${common[@]}" --epochs 2 --batch 8 \
  --sync-bn --threads 1 --out "$tmp/b" --procs 2 > "$tmp/b.out" 2> "$tmp/b.err" || rc=$?
t=$(secs "$t0" "$(now)")
line=$(grep -v -- "^--version" "$tmp/launcher.log" 2>/dev/null | head -1 || true)
echo "mpich_check: b: whisker ran: LAUNCHER ${line:-(nothing)}"
if [ "$rc" -ne 0 ]; then
  cat "$tmp/b.err"
  fail "b: WHISKER_MPIRUN=mpiexec.mpich whisker train --procs 2 exited $rc"
else
  judge "b (WHISKER_MPIRUN=mpiexec.mpich whisker train --procs 2)" "$tmp/b" "$t"
fi
if [[ "$line" == "-np 2 -bind-to none $bin train "* ]]; then
  pass "b (launcher flags): Hydra detected, -np 2 -bind-to none"
else
  fail "b (launcher flags): expected '-np 2 -bind-to none $bin train ...' (Hydra's flags)"
fi

if [ "$failed" -ne 0 ]; then
  echo "mpich_check: FAILED"
  exit 1
fi
echo "mpich_check: ok"
