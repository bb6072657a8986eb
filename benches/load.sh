#!/usr/bin/env bash
# Load benchmark: wrk against the origin directly and through Fixative,
# interleaved in one run, then the ratio.
#
#   benches/load.sh [ROUNDS] [DURATION] [CONNECTIONS] [PATH]
#
# Origin: nginx when installed (serving the demo gallery files), else
# Fixative's built-in demo origin. Everything runs on loopback; the script
# stops what it started. Installs wrk through apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10s}
CONNS=${3:-32}
PATH_=${4:-/}
THREADS=2

if ! command -v wrk >/dev/null; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq wrk >/dev/null
fi
./dev deps
cargo build --release --bin fixative -q

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN_PORT=$(free_port); PROXY_PORT=$(free_port); ADMIN_PORT=$(free_port)

if command -v nginx >/dev/null; then
  ORIGIN_KIND=nginx
  mkdir -p "$work/www/art" "$work/nginx"
  chmod 755 "$work" "$work/www" "$work/www/art"   # nginx workers run unprivileged
  cp proxy/assets/art/* "$work/www/art/"
  # A portfolio-sized HTML page (the demo origin's page is ~2.5 KB).
  { echo '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portfolio</title></head><body><h1>Portfolio</h1>'
    for f in proxy/assets/art/*.png proxy/assets/art/*.jpg; do b=$(basename "$f"); echo "<figure><img src=\"/art/$b\" alt=\"$b\"><figcaption>$b, a study in light and texture</figcaption></figure>"; done
    for _ in $(seq 12); do echo '<p>Photographs and studies. All rights reserved; not for AI training.</p>'; done
    echo '</body></html>'; } > "$work/www/index.html"
  cat > "$work/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $work/www;
    location / { try_files \$uri /index.html; }
  }
}
NGX
  nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  pids+=($!)
else
  ORIGIN_KIND="built-in demo origin"
fi

DEMO_SECTION=""
if [ "$ORIGIN_KIND" != nginx ]; then DEMO_SECTION="[demo]
listen = \"127.0.0.1:$ORIGIN_PORT\""; fi
cat > "$work/fixative.toml" <<TOML
[server]
listen = ["127.0.0.1:$PROXY_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
threads = 2
[log]
access = "off"
$DEMO_SECTION
[[site]]
name = "bench"
hosts = ["127.0.0.1"]
upstreams = ["127.0.0.1:$ORIGIN_PORT"]
policy = "off"   # detection runs, nothing is limited (wrk is one client)
default = true
TOML
./target/release/fixative run --config "$work/fixative.toml" 2>"$work/fixative.err" &
pids+=($!)

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PROXY_PORT$PATH_" -o /dev/null 2>/dev/null && break; sleep 0.1
done
# Refuse to report figures for a broken setup.
for url in "http://127.0.0.1:$ORIGIN_PORT$PATH_" "http://127.0.0.1:$PROXY_PORT$PATH_"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
  if [ "$code" != 200 ]; then echo "load.sh: $url answers $code, not 200; aborting" >&2; exit 1; fi
done

run_wrk() { # url -> "rps p50_ms p99_ms non2xx"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" > "$work/wrk.out" 2>&1 || true
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.out"); non2xx=${non2xx:-0}
  echo "$rps $p50 $p99 $non2xx"
}

echo "origin: $ORIGIN_KIND; wrk -t$THREADS -c$CONNS -d$DURATION; path $PATH_; $ROUNDS interleaved rounds"
printf "%-7s %-9s %12s %10s %10s %8s\n" round target req/s p50 p99 non-2xx
sum_d=0; sum_p=0
for r in $(seq "$ROUNDS"); do
  read -r d50 d_p50 d_p99 d_bad <<<"$(run_wrk "http://127.0.0.1:$ORIGIN_PORT$PATH_")"
  printf "%-7s %-9s %12s %10s %10s %8s\n" "$r" direct "$d50" "$d_p50" "$d_p99" "$d_bad"
  read -r p50r p_p50 p_p99 p_bad <<<"$(run_wrk "http://127.0.0.1:$PROXY_PORT$PATH_")"
  printf "%-7s %-9s %12s %10s %10s %8s\n" "$r" fixative "$p50r" "$p_p50" "$p_p99" "$p_bad"
  sum_d=$(python3 -c "print($sum_d + $d50)"); sum_p=$(python3 -c "print($sum_p + $p50r)")
done
python3 -c "print(f'mean req/s direct {$sum_d/$ROUNDS:.0f}, through fixative {$sum_p/$ROUNDS:.0f}, ratio {$sum_p/$sum_d:.2f}')"
