#!/usr/bin/env bash
# Load benchmark: wrk against the origin directly, a bare Pingora proxy
# (proxy/src/baseline.rs, run by proxy/examples/bare_pingora.rs: same Pingora,
# allocator and threads) and
# Fixative (default policy, access log to a file), interleaved in one run,
# on three paths: a 1 KiB file, an HTML page (rewritten by Fixative) and a
# ~200 KiB JPEG (XMP metadata inserted by Fixative). Prints req/s, p50 and
# p99 per round and the ratios against bare Pingora.
#
#   benches/load.sh [ROUNDS] [DURATION] [CONNECTIONS]
#
# PERF=DIR records a CPU profile of bare Pingora and Fixative (perf,
# cpu-clock, call graphs) during each of their runs into
# DIR/perf-<target>-<path>-<round>.data (and the requests served in .n),
# then prints where each one's CPU per request goes and the difference, by
# cause (benches/perf_breakdown.py: Fixative's hooks, kernel by system call,
# allocator, Pingora, ...). Both proxies are then built with frame pointers
# (target/perf, or PERF_TARGET) so that call graphs are whole; the throughput figures of
# such a run are of those builds. Read one profile with
# `perf report -i FILE --no-children`.
#
# ALLOCS=1 also counts heap allocations per request on each path, with a
# second Fixative and a second bare Pingora built with `--features
# count-allocs` (the system allocator with a counter; their own target
# directory; their throughput is not reported).
#
# ABLATE=1 then measures the 1 KiB path again against Fixative with one
# feature switched off at a time by configuration (access log off; policy
# `off`: verdicts computed, nothing enforced, no rate-limit headers; no
# directive headers) and with all three off, interleaved with bare
# Pingora: how much of the gap each feature is, and what is left with
# none of them (detection still runs: it cannot be configured away).
#
# Traffic looks like browsers: a Firefox user agent and headers, from
# 10,000 client addresses given in X-Forwarded-For (127.0.0.1 is a trusted
# proxy). Origin: nginx (installed when missing). Everything runs on
# loopback; the script stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10s}
CONNS=${3:-32}
THREADS=2

. benches/lib.sh
bench_prereqs
BIN=./target/release
if [ -n "${PERF:-}" ]; then
  command -v perf >/dev/null || { echo "load.sh: PERF needs perf (Debian: linux-perf)" >&2; exit 1; }
  # PERF_TARGET: where those builds go (default target/perf).
  export CARGO_TARGET_DIR=${PERF_TARGET:-target/perf} RUSTFLAGS="-C force-frame-pointers=yes"
  BIN=$CARGO_TARGET_DIR/release
fi
cargo build --release -q --bin fixative
cargo build --release -q -p fixative-proxy --example bare_pingora
unset CARGO_TARGET_DIR RUSTFLAGS
cargo build --release -q -p fixative-protector --example bench_jpeg
if [ -n "${ALLOCS:-}" ]; then
  CARGO_TARGET_DIR=target/allocs cargo build --release -q --features count-allocs --bin fixative
  CARGO_TARGET_DIR=target/allocs cargo build --release -q -p fixative-proxy --features count-allocs --example bare_pingora
fi

ORIGIN_PORT=$(free_port); BARE_PORT=$(free_port); PROXY_PORT=$(free_port); ADMIN_PORT=$(free_port)

# The origin: nginx serving the three files.
mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"   # nginx workers run unprivileged
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$work/www/small.txt"
./target/release/examples/bench_jpeg "$work/www/photo.jpg" 200 2>/dev/null
{ echo '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portfolio</title></head><body><h1>Portfolio</h1>'
  for f in proxy/assets/art/*.png proxy/assets/art/*.jpg; do b=$(basename "$f"); echo "<figure><img src=\"/art/$b\" alt=\"$b\"><figcaption>$b, a study in light and texture</figcaption></figure>"; done
  for _ in $(seq 12); do echo '<p>Photographs and studies. All rights reserved; not for AI training.</p>'; done
  echo '</body></html>'; } > "$work/www/index.html"
chmod 644 "$work/www/"*
cat > "$work/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  types { text/html html; image/jpeg jpg; text/plain txt; }
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $work/www;
  }
}
NGX
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

"$BIN/examples/bare_pingora" "127.0.0.1:$BARE_PORT" "127.0.0.1:$ORIGIN_PORT" "$THREADS" \
  >"$work/bare.out" 2>"$work/bare.err" &
pids+=($!)
BARE_PID=$!

cat > "$work/fixative.toml" <<TOML
[server]
listen = ["127.0.0.1:$PROXY_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
threads = $THREADS
trusted_proxies = ["127.0.0.1"]
# Exit at once when the run is over (no in-flight requests to wait for).
grace_period = "0s"
[log]
access = "$work/access.log"
[[site]]
name = "bench"
hosts = ["127.0.0.1"]
upstreams = ["127.0.0.1:$ORIGIN_PORT"]
default = true
[protector]
secret = "load-benchmark-secret-0123456789"
[challenge]
# wrk runs no script: give its 10,000 addresses originals, as people with
# a pass get, so the JPEG path measures metadata insertion, not cloaking.
grace_images = 10000
TOML
"$BIN/fixative" run --config "$work/fixative.toml" >"$work/fixative.out" 2>"$work/fixative.err" &
pids+=($!)
FIXATIVE_PID=$!

# Browser-like requests from 10,000 addresses.
cat > "$work/browser.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local i = n % 10000
  local ip = "10." .. math.floor(i / 65536) % 256 .. "." .. math.floor(i / 256) % 256 .. "." .. i % 256
  wrk.headers["Host"] = "127.0.0.1"
  wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0"
  wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
  wrk.headers["Accept-Language"] = "en-US,en;q=0.5"
  wrk.headers["Accept-Encoding"] = "identity"
  wrk.headers["Sec-Fetch-Mode"] = "navigate"
  wrk.headers["X-Forwarded-For"] = ip
  return wrk.format(nil)
end
LUA

# LOAD_PATHS="/small.txt" limits the run to some paths.
read -r -a PATHS <<<"${LOAD_PATHS:-/small.txt /index.html /photo.jpg}"
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PROXY_PORT/small.txt" -o /dev/null 2>/dev/null && \
  curl -fs "http://127.0.0.1:$BARE_PORT/small.txt" -o /dev/null 2>/dev/null && break; sleep 0.1
done
# Refuse to report figures for a broken setup: every target answers 200,
# Fixative rewrites the page and marks the JPEG.
for port in "$ORIGIN_PORT" "$BARE_PORT" "$PROXY_PORT"; do
  for p in "${PATHS[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0' -H 'Accept-Language: en' -H 'Sec-Fetch-Mode: navigate' -H 'Accept: */*' "http://127.0.0.1:$port$p")
    if [ "$code" != 200 ]; then echo "load.sh: 127.0.0.1:$port$p answers $code, not 200; aborting" >&2; cat "$work/fixative.err" >&2; exit 1; fi
  done
done
curl -s -o "$work/page.html" "http://127.0.0.1:$PROXY_PORT/index.html"
grep -q 'name="robots"' "$work/page.html" || { echo "load.sh: the page was not rewritten" >&2; exit 1; }
curl -s -o "$work/photo.jpg" "http://127.0.0.1:$PROXY_PORT/photo.jpg"
grep -aq 'DataMining' "$work/photo.jpg" || { echo "load.sh: the JPEG carries no XMP" >&2; exit 1; }


echo "origin nginx; wrk -t$THREADS -c$CONNS -d$DURATION, 10,000 client addresses; $ROUNDS interleaved rounds; $(nproc) cores"
# cpu/req: the proxy's own CPU time (user + system, /proc) per request served,
# a figure that does not depend on how much of the machine wrk takes.
cpu_ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
printf "%-12s %-6s %-9s %10s %10s %10s %8s %9s\n" path round target req/s p50 p99 non-2xx cpu/req
: > "$work/results"
for p in "${PATHS[@]}"; do
  for r in $(seq "$ROUNDS"); do
    for t in direct bare fixative; do
      case $t in direct) port=$ORIGIN_PORT ;; bare) port=$BARE_PORT ;; fixative) port=$PROXY_PORT ;; esac
      case $t in direct) tpid="" ;; bare) tpid=$BARE_PID ;; fixative) tpid=$FIXATIVE_PID ;; esac
      c0=$(cpu_ticks "$tpid")
      perf_pid=""
      if [ -n "${PERF:-}" ] && [ -n "$tpid" ]; then
        mkdir -p "$PERF"
        perf record -q -F 999 -g -p "$tpid" -o "$PERF/perf-$t-$(basename "$p")-$r.data" >/dev/null 2>&1 &
        perf_pid=$!
      fi
      read -r rps p50 p99 bad <<<"$(run_wrk "http://127.0.0.1:$port$p" "$work/browser.lua")"
      if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
      c1=$(cpu_ticks "$tpid")
      nreq=$(awk '/requests in/ {print $1}' "$work/wrk.out")
      [ -n "$perf_pid" ] && echo "${nreq:-0}" > "$PERF/perf-$t-$(basename "$p")-$r.n"
      cpu="-"; [ -n "$tpid" ] && [ "${nreq:-0}" -gt 0 ] && cpu="$(( (c1 - c0) * TICK_US / nreq ))us"
      printf "%-12s %-6s %-9s %10s %10s %10s %8s %9s\n" "$p" "$r" "$t" "$rps" "$p50" "$p99" "$bad" "$cpu"
      echo "$p $t $rps $p50 $p99 ${cpu%us}" >> "$work/results"
    done
  done
done

python3 - "$work/results" <<'PY'
import sys, collections
def ms(s):
    for u, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if s.endswith(u):
            return float(s[:-len(u)]) * f
    return float(s)
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p, t, rps, p50, p99, cpu = line.split()
    rows[(p, t)].append((float(rps), ms(p50), ms(p99), float(cpu) if cpu != "-" else 0.0))
print()
print(f"{'path':<12} {'target':<9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'p99-bare':>9} {'cpu/req':>8}")
for p in dict.fromkeys(k[0] for k in rows):
    mean = {t: [sum(x) / len(x) for x in zip(*rows[(p, t)])] for t in ("direct", "bare", "fixative")}
    for t in ("direct", "bare", "fixative"):
        rps, p50, p99, cpu = mean[t]
        ratio = rps / mean["bare"][0]
        dp99 = (p99 - mean["bare"][2]) * 1000
        cpus = f"{cpu:>6.0f}us" if cpu else f"{'-':>8}"
        print(f"{p:<12} {t:<9} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {ratio:>7.2f}x {dp99:>+7.0f}us {cpus}")
PY

if [ -n "${PERF:-}" ]; then
  python3 benches/perf_breakdown.py "$PERF"
fi

# config_copy NAME PORT ADMIN: $work/NAME.toml, the benchmark's Fixative
# configuration listening on PORT (admin on ADMIN), logging to
# $work/access-NAME.log.
config_copy() {
  sed -e "s/127.0.0.1:$PROXY_PORT/127.0.0.1:$2/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$3/" \
      -e "s#$work/access.log#$work/access-$1.log#" "$work/fixative.toml" > "$work/$1.toml"
}

if [ -n "${ALLOCS:-}" ]; then
  COUNT_PORT=$(free_port); COUNT_ADMIN=$(free_port)
  config_copy count "$COUNT_PORT" "$COUNT_ADMIN"
  ./target/allocs/release/fixative run --config "$work/count.toml" >"$work/count.out" 2>"$work/count.err" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$COUNT_PORT/small.txt" -o /dev/null 2>/dev/null && break; sleep 0.1; done
  # Bare Pingora with the same counting allocator: its count on stderr
  # every 100 ms, requests from wrk.
  BARE_COUNT_PORT=$(free_port)
  ./target/allocs/release/examples/bare_pingora "127.0.0.1:$BARE_COUNT_PORT" "127.0.0.1:$ORIGIN_PORT" "$THREADS" \
    >/dev/null 2>"$work/bare-count.err" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$BARE_COUNT_PORT/small.txt" -o /dev/null 2>/dev/null && break; sleep 0.1; done
  metric() { curl -fs "http://127.0.0.1:$COUNT_ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
  bare_allocs() { awk '/^allocations / {n = $2} END {print n + 0}' "$work/bare-count.err"; }
  echo
  echo "heap allocations per request (counting builds, system allocator; background tasks included)"
  printf "%-12s %10s %10s\n" path bare fixative
  for p in "${PATHS[@]}"; do
    wrk -t1 -c4 -d1s -s "$work/browser.lua" "http://127.0.0.1:$COUNT_PORT$p" >/dev/null 2>&1 || true
    a0=$(metric fixative_debug_allocations_total); r0=$(metric fixative_requests_total)
    wrk -t"$THREADS" -c"$CONNS" -d3s -s "$work/browser.lua" "http://127.0.0.1:$COUNT_PORT$p" >/dev/null 2>&1 || true
    sleep 0.2
    a1=$(metric fixative_debug_allocations_total); r1=$(metric fixative_requests_total)
    wrk -t1 -c4 -d1s -s "$work/browser.lua" "http://127.0.0.1:$BARE_COUNT_PORT$p" >/dev/null 2>&1 || true
    sleep 0.3; b0=$(bare_allocs)
    wrk -t"$THREADS" -c"$CONNS" -d3s -s "$work/browser.lua" "http://127.0.0.1:$BARE_COUNT_PORT$p" > "$work/wrk-count.out" 2>&1 || true
    sleep 0.3; b1=$(bare_allocs)
    n=$(awk '/requests in/ {print $1}' "$work/wrk-count.out")
    python3 -c "print(f'{\"$p\":<12} {($b1-$b0)/max(1,${n:-0}):10.1f} {($a1-$a0)/max(1,$r1-$r0):10.1f}')"
  done
fi

if [ -n "${ABLATE:-}" ]; then
  # Fixative with one feature off; PORT/PID per variant.
  declare -A VPORT VPID
  variant() {
    local name=$1 port admin
    port=$(free_port); admin=$(free_port)
    config_copy "$name" "$port" "$admin"
    case $name in
      log-off) sed -i "s#^access = .*#access = \"off\"#" "$work/$name.toml" ;;
      policy-off) sed -i '/^default = true/a policy = "off"' "$work/$name.toml" ;;
      no-directives) sed -i '/^default = true/a directives = { x_robots_tag = [], tdm_reservation = false, content_usage = "", rsl = false }' "$work/$name.toml" ;;
      all-off)
        sed -i "s#^access = .*#access = \"off\"#" "$work/$name.toml"
        sed -i '/^default = true/a policy = "off"\ndirectives = { x_robots_tag = [], tdm_reservation = false, content_usage = "", rsl = false }' "$work/$name.toml" ;;
    esac
    ./target/release/fixative run --config "$work/$name.toml" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!); VPID[$name]=$!; VPORT[$name]=$port
    local up=""
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/small.txt" -o /dev/null 2>/dev/null && up=1 && break; sleep 0.1; done
    [ -n "$up" ] || { echo "load.sh: the $name variant did not start" >&2; cat "$work/$name.err" >&2; exit 1; }
    # Refuse a variant that does not have its feature off.
    local head; head=$(curl -s -D- -o /dev/null -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0' \
      -H 'Accept-Language: en' -H 'Sec-Fetch-Mode: navigate' -H 'Accept: */*' "http://127.0.0.1:$port/small.txt" | tr 'A-Z' 'a-z')
    case $name in
      full) grep -q '^ratelimit:' <<<"$head" && grep -q '^x-robots-tag:' <<<"$head" ;;
      log-off) [ ! -s "$work/access-$name.log" ] ;;
      policy-off) ! grep -q '^ratelimit:' <<<"$head" ;;
      no-directives) ! grep -q '^x-robots-tag:' <<<"$head" ;;
      all-off) [ ! -s "$work/access-$name.log" ] && ! grep -q '^ratelimit:' <<<"$head" && ! grep -q '^x-robots-tag:' <<<"$head" ;;
    esac || { echo "load.sh: the $name variant still has its feature on" >&2; exit 1; }
  }
  # `full` is a fresh process with the benchmark's configuration: the
  # variants are compared with it, not with the Fixative that already
  # served every path (its tables and heap have grown).
  VARIANTS="full log-off policy-off no-directives all-off"
  for v in $VARIANTS; do variant "$v"; done
  VPORT[bare]=$BARE_PORT; VPID[bare]=$BARE_PID
  echo
  echo "ablation, /small.txt: Fixative with one feature off (req/s, cpu/req; ${ROUNDS} interleaved rounds)"
  : > "$work/ablate"
  for r in $(seq "$ROUNDS"); do
    for t in bare $VARIANTS; do
      c0=$(cpu_ticks "${VPID[$t]}")
      read -r rps _ _ _ <<<"$(run_wrk "http://127.0.0.1:${VPORT[$t]}/small.txt" "$work/browser.lua")"
      c1=$(cpu_ticks "${VPID[$t]}")
      nreq=$(awk '/requests in/ {print $1}' "$work/wrk.out")
      echo "$t $rps $(( (c1 - c0) * TICK_US / ${nreq:-1} ))" >> "$work/ablate"
    done
  done
  python3 - "$work/ablate" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, rps, cpu = line.split()
    rows[t].append((float(rps), float(cpu)))
mean = {t: [sum(x) / len(x) for x in zip(*v)] for t, v in rows.items()}
print(f"{'target':<14} {'req/s':>8} {'vs bare':>8} {'cpu/req':>8} {'vs full':>8}")
for t, (rps, cpu) in mean.items():
    print(f"{t:<14} {rps:>8.0f} {rps / mean['bare'][0]:>7.2f}x {cpu:>6.0f}us {cpu - mean['full'][1]:>+6.0f}us")
PY
fi
