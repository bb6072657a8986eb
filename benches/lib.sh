# Shared by benches/load.sh and benches/fleet.sh (sourced, not run):
# prerequisites, a work directory cleaned up on exit, free ports, wrk.

# Installs wrk and nginx when missing, and the project's prerequisites.
bench_prereqs() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v nginx >/dev/null || need+=(nginx)
  if [ ${#need[@]} -gt 0 ]; then
    local sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  ./dev deps
}

# $work: a temporary directory; processes whose pids are added to $pids
# are stopped on exit, and $work removed unless KEEP is set.
work=$(mktemp -d)
pids=()
# Stopped with SIGTERM, then SIGKILL for any still running after 3 s: a
# process left behind would share the machine with the next run.
cleanup() {
  local p _
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 30); do
    local alive=""
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_wrk URL LUA -> "req/s p50 p99 non-2xx" (wrk's output stays in $work/wrk.out)
run_wrk() {
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$2" "$1" > "$work/wrk.out" 2>&1 || true
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.out"); non2xx=${non2xx:-0}
  echo "$rps $p50 $p99 $non2xx"
}
