# dist_lib.sh - shell helpers of the data-parallel fault tests
# (tests/test_dist_train.sh, tests/test_gpu_ddp.sh), sourced by them; they
# define fail().

# rank_pid MPIRUN_PID RUN_DIR [TENTHS]: the pid of rank 1 under that mpirun (or
# under whisker, which execs it), once the run has written its first metrics
# (so it is training, past the start-up that $WHISKER_DIST_TIMEOUT does not
# cover); empty if that is not so within TENTHS tenths of a second (default 300)
rank_pid() {
  local p victim="" end=$((SECONDS + (${3:-300} + 9) / 10))
  while [ "$SECONDS" -le "$end" ]; do
    for p in $(pgrep -P "$1" 2>/dev/null); do
      grep -qzx "OMPI_COMM_WORLD_RANK=1" "/proc/$p/environ" 2>/dev/null && victim=$p
    done
    [ -n "$victim" ] && [ -s "$2/metrics.csv" ] && { echo "$victim"; return 0; }
    sleep 0.1
  done
  echo ""
}

# ends_within RUN_PID VICTIM LIMIT_S WHAT LOG: the run ends within LIMIT_S
# (then the victim, if any, is killed whatever happened) with a failure
# status, else fail() after printing LOG; the seconds it took in $secs. Call
# it in the shell that started the run, not in a $(...) subshell: only that
# shell can wait for the run's exit status.
ends_within() {
  local t0 rc=0
  t0=$(date +%s)
  for _ in $(seq $(($3 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then
    [ -z "$2" ] || kill -9 "$2" 2>/dev/null || true
    cat "$5"
    fail "$4: the run did not stop within $3 s"
  fi
  wait "$1" || rc=$?
  [ -z "$2" ] || kill -9 "$2" 2>/dev/null || true
  [ "$rc" -ne 0 ] || { cat "$5"; fail "$4: the run exited 0"; }
  secs=$(( $(date +%s) - t0 ))
}
