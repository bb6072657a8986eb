#!/usr/bin/env bash
# Fleet benchmark: one Fixative node with `[state] backend = "memory"` and
# one with `backend = "redis"` (Debian's redis-server on a free loopback
# port), interleaved in one run, for two kinds of traffic:
#   people  a browser from 100,000 addresses, each far from the default
#           policy's per-address limit (20/s, burst 100): the redis node
#           admits them without a round trip;
#   bots    a self-declared bot from 10,000 addresses under a `limit` rule
#           keyed by network (a quota too large to refuse): one round trip
#           per request.
# Prints req/s, p50, p99 per round, the ratio redis/memory, and what the
# redis node measured itself: round trips per request and their mean time.
#
#   benches/fleet.sh [ROUNDS] [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10s}
CONNS=${3:-32}
THREADS=2

. benches/lib.sh
bench_prereqs
cargo build --release -q --bin fixative

ORIGIN=$(free_port); REDIS=$(free_port)

mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$work/www/small.txt"
chmod 644 "$work/www/small.txt"
cat > "$work/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; types { text/plain txt; } server { listen 127.0.0.1:$ORIGIN; root $work/www; } }
NGX
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
redis-server --bind 127.0.0.1 --port "$REDIS" --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)

declare -A PORT ADMIN
for backend in memory redis; do
  PORT[$backend]=$(free_port); ADMIN[$backend]=$(free_port)
  state=""
  [ "$backend" = redis ] && state="[state]
backend = \"redis\"
url = \"redis://127.0.0.1:$REDIS\""
  cat > "$work/$backend.toml" <<TOML
[server]
listen = ["127.0.0.1:${PORT[$backend]}"]
admin = "127.0.0.1:${ADMIN[$backend]}"
threads = $THREADS
trusted_proxies = ["127.0.0.1"]
[log]
access = "$work/$backend.access.log"
[[site]]
name = "bench"
hosts = ["127.0.0.1"]
upstreams = ["127.0.0.1:$ORIGIN"]
default = true
policy = "bench"
[policy.bench]
[[policy.bench.rule]]
name = "limit-bots"
match = { category = ["unknown-bot"] }
action = "limit"
quota = { rate = 1000000, per = "minute", burst = 1000000, key = "ip-prefix" }
[[policy.bench.rule]]
name = "limit-everyone"
action = "limit"
quota = { rate = 20, per = "second", burst = 100, key = "ip" }
$state
TOML
  ./target/release/fixative run --config "$work/$backend.toml" >"$work/$backend.out" 2>"$work/$backend.err" &
  pids+=($!)
done

for kind in people bots; do
  if [ $kind = people ]; then
    ua="Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0"; addrs=100000
  else
    ua="BenchBot/1.0 (+https://bots.example.org/bench)"; addrs=10000
  fi
  cat > "$work/$kind.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local i = n % $addrs
  local ip = "10." .. math.floor(i / 65536) % 256 .. "." .. math.floor(i / 256) % 256 .. "." .. i % 256
  wrk.headers["Host"] = "127.0.0.1"
  wrk.headers["User-Agent"] = "$ua"
  wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
  wrk.headers["Accept-Language"] = "en-US,en;q=0.5"
  wrk.headers["Sec-Fetch-Mode"] = "navigate"
  wrk.headers["X-Forwarded-For"] = ip
  return wrk.format(nil)
end
LUA
done

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:${PORT[memory]}/small.txt" -o /dev/null 2>/dev/null && \
  curl -fs "http://127.0.0.1:${ADMIN[redis]}/metrics" 2>/dev/null | grep -q '^fixative_state_backend_up 1' && break; sleep 0.1
done
curl -fs "http://127.0.0.1:${ADMIN[redis]}/metrics" | grep -q '^fixative_state_backend_up 1' || { echo "fleet.sh: the redis node is not connected" >&2; cat "$work/redis.err" >&2; exit 1; }

metric() { curl -fs "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }


echo "origin nginx /small.txt; wrk -t$THREADS -c$CONNS -d$DURATION, people from 100,000 addresses, bots from 10,000; $ROUNDS interleaved rounds; $(nproc) cores (wrk, nginx, redis and both nodes share them)"
printf "%-7s %-6s %-8s %10s %10s %10s %8s %12s %10s\n" traffic round backend req/s p50 p99 non-2xx trips/req trip-us
: > "$work/results"
for kind in people bots; do
  for r in $(seq "$ROUNDS"); do
    for b in memory redis; do
      d0=$(metric "${ADMIN[$b]}" 'fixative_state_decisions_total{by="fleet"}'); s0=$(metric "${ADMIN[$b]}" fixative_state_quota_seconds_sum)
      read -r rps p50 p99 bad <<<"$(run_wrk "http://127.0.0.1:${PORT[$b]}/small.txt" "$work/$kind.lua")"
      d1=$(metric "${ADMIN[$b]}" 'fixative_state_decisions_total{by="fleet"}'); s1=$(metric "${ADMIN[$b]}" fixative_state_quota_seconds_sum)
      reqs=$(awk '/requests in/ {print $1}' "$work/wrk.out")
      trips=$(python3 -c "print(f'{(${d1:-0}-${d0:-0})/max(1,$reqs):.3f}')")
      us=$(python3 -c "d=${d1:-0}-${d0:-0}; print(f'{(${s1:-0}-${s0:-0})/d*1e6:.0f}' if d else '-')")
      printf "%-7s %-6s %-8s %10s %10s %10s %8s %12s %10s\n" "$kind" "$r" "$b" "$rps" "$p50" "$p99" "$bad" "$trips" "$us"
      echo "$kind $b $rps $p50 $p99" >> "$work/results"
    done
  done
done
local_decisions=$(metric "${ADMIN[redis]}" 'fixative_state_decisions_total{by="local"}')
echo "redis node: decisions taken locally (store slow or down): ${local_decisions:-0}; timeouts: $(metric "${ADMIN[redis]}" 'fixative_state_backend_errors_total{op="quota_timeout"}')"

python3 - "$work/results" <<'PY'
import sys, collections
def ms(s):
    for u, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if s.endswith(u):
            return float(s[:-len(u)]) * f
    return float(s)
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, b, rps, p50, p99 = line.split()
    rows[(k, b)].append((float(rps), ms(p50), ms(p99)))
print()
print(f"{'traffic':<8} {'backend':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs memory':>10} {'p99 diff':>9}")
for k in ("people", "bots"):
    mean = {b: [sum(x) / len(x) for x in zip(*rows[(k, b)])] for b in ("memory", "redis")}
    for b in ("memory", "redis"):
        rps, p50, p99 = mean[b]
        print(f"{k:<8} {b:<8} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {rps / mean['memory'][0]:>9.2f}x {(p99 - mean['memory'][2]) * 1000:>+7.0f}us")
PY
