#!/usr/bin/env bash
# test_dist_mpi.sh - dist.h in a real MPI world of two ranks (tests/dist_mpi_prog.c):
#   1. `check`: sizes, sums, a broadcast, overlapping requests on both channels,
#      with requests split into chunks of $WHISKER_MPI_CHUNK elements;
#   2. `timeout`: rank 1 sleeps 30 s before a collective; with
#      WHISKER_DIST_TIMEOUT=2 rank 0 must report "no answer from the other
#      ranks", abort the world, and mpirun must end non-zero well before 30 s;
#   3. a launcher that does not match the MPI whisker was built with (MPICH's
#      mpiexec starting an Open MPI build): every process's MPI is a world of
#      one. Played by one process started without mpirun, with MPICH's
#      PMI_SIZE=2 in its environment: it must refuse to run, naming the mix-up;
#   4. `close`: rank 1 reaches wk_dist_close 30 s late (a hung last write):
#      rank 0's close must time out in its barrier, not wait in MPI_Finalize.
# Usage: test_dist_mpi.sh PROG PLUGIN (PLUGIN empty: built without MPI).
# Exit 77 (skipped) without mpirun or without the MPI backend.
set -euo pipefail
prog="${1:?usage: test_dist_mpi.sh PROG PLUGIN}"
plugin="${2:-}"
[ -n "$plugin" ] || { echo "test_dist_mpi: built without MPI: skipped"; exit 77; }
command -v mpirun > /dev/null || { echo "test_dist_mpi: no mpirun: skipped"; exit 77; }
fail() { echo "test_dist_mpi: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Root in a container (CI), shared memory only (no network), no CMA (ptrace
# is often forbidden), no UCX probing.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export WHISKER_MPI_PLUGIN="$plugin"
# In a sanitizer build: Open MPI keeps thousands of allocations past exit,
# which LeakSanitizer would report (none of them whisker's).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
run() { timeout 120 mpirun --oversubscribe -np 2 "$@"; }

# 1
WHISKER_MPI_CHUNK=1000000 run "$prog" check > "$tmp/check.out" 2>&1 \
  || { cat "$tmp/check.out"; fail "check run"; }
cat "$tmp/check.out"
for r in 0 1; do
  grep -q "dist_mpi_prog: rank $r ok" "$tmp/check.out" || fail "rank $r did not finish"
done

# A run of MODE whose rank 1 is 30 s late, with WHISKER_DIST_TIMEOUT=2:
# it must fail (not exit 0, not hang until timeout(1)), within 28 s, with
# rank 0's timeout message naming WHAT.
late_rank_fails() {
  local mode="$1" what="$2" t0 t1 secs rc=0
  t0=$(date +%s.%N)
  WHISKER_DIST_TIMEOUT=2 run "$prog" "$mode" > "$tmp/$mode.out" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  cat "$tmp/$mode.out"
  echo "test_dist_mpi: the $mode run ended in $secs s with exit code $rc"
  [ "$rc" -ne 0 ] || fail "the $mode run exited 0"
  [ "$rc" -ne 124 ] || fail "the $mode run hung until timeout(1) killed it"
  grep -q "rank 0 of 2: no answer from the other ranks for 2 s in $what" "$tmp/$mode.out" \
    || fail "no timeout message naming $what"
  awk -v s="$secs" 'BEGIN { exit !(s < 28) }' \
    || fail "the $mode run took $secs s (>= 28 s; its rank 1 is 30 s late)"
}

# 2
late_rank_fails timeout "the timeout test's sum (a rank stopped or hangs)"
# 4 (before 3, which needs no mpirun): the end of the run has a deadline too
late_rank_fails close "the end of the run"

# 3
rc=0
PMI_SIZE=2 timeout 60 "$prog" check > "$tmp/mix.out" 2>&1 || rc=$?
cat "$tmp/mix.out"
[ "$rc" -ne 0 ] || fail "a lone process under a 2-process launcher's environment ran"
[ "$rc" -ne 124 ] || fail "the mismatched launcher run hung"
grep -q "the MPI launcher started 2 processes, but MPI sees each as a world of one" \
  "$tmp/mix.out" || fail "no message naming the launcher mix-up"
echo "test_dist_mpi: ok"
