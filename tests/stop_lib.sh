# stop_lib.sh - stop a training run at its first checkpoint, whatever the
# machine's speed, sourced by the tests that kill or interrupt a run mid-way
# (test_e2e, test_faults_e2e, test_finetune_e2e, test_dist_train,
# test_gpu_ddp); they define fail(). ctest names the shim in $WKT_STOP_AT_LIB
# (tests/stop_at.c).
#
#   stop_at_checkpoint CMD ARGS... &  runs CMD in the background (it execs
#       CMD, so $! is CMD's pid) so that the process that first renames a
#       checkpoint.safetensors into place stops itself (SIGSTOP) right after:
#       the checkpoint is whole, and the run cannot go on;
#   stopped_pid ROOT [TENTHS]  prints the pid of that stopped process, ROOT
#       itself or one of its descendants (an MPI rank under mpirun), once it is
#       stopped; empty if none is within TENTHS tenths of a second (default
#       600), or as soon as ROOT has ended (finished or died before its first
#       checkpoint). Callers fail on an empty answer.

stop_at_checkpoint() {
  # it execs CMD, so $! is CMD's pid: in the test's own shell it would end the test
  [ "$BASHPID" != "$$" ] || fail "stop_at_checkpoint runs in the background (&) only"
  [ -f "${WKT_STOP_AT_LIB:-}" ] || fail "WKT_STOP_AT_LIB names no shim library (run through ctest)"
  # in a sanitizer build (gcc links ASan's runtime dynamically) the shim comes
  # before that runtime, which ASan refuses unless told not to check
  LD_PRELOAD="$WKT_STOP_AT_LIB${LD_PRELOAD:+:$LD_PRELOAD}" WKT_STOP_AT=checkpoint.safetensors \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" exec "$@"
}

# the pids of ROOT and all its descendants
stop_lib_tree() {
  local p
  echo "$1"
  for p in $(pgrep -P "$1" 2>/dev/null); do stop_lib_tree "$p"; done
}

stopped_pid() {
  local p st end=$((SECONDS + (${2:-600} + 9) / 10))
  while [ "$SECONDS" -le "$end" ]; do
    st=$(ps -o stat= -p "$1" 2>/dev/null) || break
    case "$st" in Z*) break ;; esac
    for p in $(stop_lib_tree "$1"); do
      st=$(ps -o stat= -p "$p" 2>/dev/null) || continue
      case "$st" in T*) echo "$p"; return 0 ;; esac
    done
    sleep 0.1
  done
  echo ""
}
