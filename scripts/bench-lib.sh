# Shared by scripts/bench-redirect.sh, scripts/ab-redirect.sh and scripts/pair-redirect.sh (sourced, not run): tools, ports,
# a refrouter node with one campaign and one link, nginx `return 302`, one measured wrk round.
# The sourcing script sets NAME (its own name, for messages) and calls bench_begin first.

# bench_begin: a scratch directory WORK and a list PIDS of the processes started (each function
# here adds what it starts), both cleaned up when the script exits; then nginx and wrk, installed
# with apt-get when missing.
bench_begin() {
  WORK=$(mktemp -d "/tmp/rr-$NAME.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  local need=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} with apt-get" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
      echo "$NAME: cannot install ${need[*]} (apt-get failed); install them and run again" >&2
      exit 1
    fi
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  CLK=$(getconf CLK_TCK)
}

bench_cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# cpu_ns PID: nanoseconds PID's threads have spent on the CPU (schedstat), to the nanosecond where
# cpu_ticks counts 10 ms ticks.
cpu_ns() { local t=0 x _; for f in /proc/"$1"/task/*/schedstat; do read -r x _ <"$f" && t=$((t + x)); done; echo "$t"; }
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_node BIN DIR: one refrouter node of BIN pinned to core 0 (GeoIP demo database, trusted
# proxy 127.0.0.0/8), one campaign, one link. Sets NODE_PID, NODE_PORT, CODE and NODE_URL (the
# link).
start_node() {
  local bin=$1 dir=$WORK/$2 gp cp
  mkdir -p "$dir"
  NODE_PORT=$(port); gp=$(port); cp=$(port)
  "$bin" geo build-demo "$dir/geo.mmdb"
  cat >"$dir/node.yaml" <<YAML
name: bench-1
region: eu-central
lat: 50.11
lon: 8.68
listen: 127.0.0.1:$NODE_PORT
gossip: 127.0.0.1:$gp
cluster: 127.0.0.1:$cp
profile: local
bootstrap_expect: 1
data_dir: $dir/data
log_level: error
tokens: [{token: bench-admin-token-0001, role: admin}, {token: bench-platform-token-01, role: platform}]
secrets: [{gen: 1, key: "$(head -c 32 /dev/urandom | base64)"}]
geoip: [$dir/geo.mmdb]
trusted_proxies: [127.0.0.0/8]
YAML
  taskset -c 0 "$bin" serve --config "$dir/node.yaml" 2>"$dir/node.log" &
  NODE_PID=$!; PIDS+=("$NODE_PID")
  for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$NODE_PORT/readyz" && break; sleep 0.05; done
  curl -sf -H 'Authorization: Bearer bench-admin-token-0001' "http://127.0.0.1:$NODE_PORT/v1/campaigns" -d '{
    "id":"bench","destination":"https://live.example.com/room/42","allowed_hosts":["live.example.com"],
    "starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z","budget":{"value":1000000},
    "invitee_reward":{"value":1},"inviter_rewards":[{"from":1,"value":1}],"attribution_window":"168h"}' >/dev/null
  CODE=$(curl -sf -H 'Authorization: Bearer bench-platform-token-01' "http://127.0.0.1:$NODE_PORT/v1/campaigns/bench/links" -d '{"inviter":"alice"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
  NODE_URL="http://127.0.0.1:$NODE_PORT/$CODE"
}

# start_bare BIN ENGINE: BIN's fixed 302 (`bare-302`, on fasthttp or edgehttp) pinned to core 0;
# sets BARE_PID and BARE_PORT.
start_bare() {
  BARE_PORT=$(port)
  taskset -c 0 "$1" bare-302 --engine "$2" --listen "127.0.0.1:$BARE_PORT" &
  BARE_PID=$!; PIDS+=("$BARE_PID")
  wait_http "http://127.0.0.1:$BARE_PORT/x"
}

# nginx_click_log DIR: the access_log directives of nginx's analogue of recording the click: a
# line per request (time, forwarded address, URI, user agent) into DIR/access.log, written in
# 64 KiB buffers.
nginx_click_log() {
  echo "log_format click '\$msec \$http_x_forwarded_for \"\$request_uri\" \"\$http_user_agent\"';
  access_log $1/access.log click buffer=64k flush=1s;"
}

# start_nginx DIR PORT ACCESS_LOG: one nginx worker pinned to core 0 answering every request with
# the same 302, logging as ACCESS_LOG says; sets NGINX_WORKER to the worker's pid.
start_nginx() {
  local dir=$WORK/$1 port=$2 log=$3 master
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log crit;
events { worker_connections 4096; }
http {
  $log
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / { return 302 "https://live.example.com/room/42?rr_click=AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; }
  }
}
NGX
  taskset -c 0 "$NGINX" -c "$dir/nginx.conf" -p "$dir" &
  master=$!; PIDS+=("$master")
  wait_http "http://127.0.0.1:$port/x"
  NGINX_WORKER=$(pgrep -P "$master" | head -1)   # the one worker does the work
}

# measure PID URL SECS: a 2 s warm-up, then SECS seconds of wrk -t1 -c64 on core 1 against URL
# (with a forwarded address and a phone's user agent); sets ROUND_REQS (requests wrk made),
# ROUND_TICKS (PID's utime+stime over the SECS seconds, in clock ticks) and ROUND_US (the CPU µs
# per request they make, to the nanosecond).
measure() {
  local pid=$1 url=$2 secs=$3 before after out
  local hdr=(-H 'X-Forwarded-For: 203.0.113.10' -H 'User-Agent: Mozilla/5.0 (iPhone) Mobile')
  taskset -c 1 wrk -t1 -c64 -d2s "${hdr[@]}" "$url" >/dev/null
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" "${hdr[@]}" "$url")
  after=$(cpu_ticks "$pid")
  ROUND_REQS=$(awk '/requests in/ {print $1}' <<<"$out")
  ROUND_TICKS=$((after - before))
  ROUND_US=$(python3 -c "print(f'{$ROUND_TICKS / $CLK * 1e6 / $ROUND_REQS:.3f}')")
}

# ratio_summary NAME BASE_US SERVER_US: per-round ratio spread and the 95 % interval (bootstrap
# over rounds, fixed seed) of the ratio of mean per-request costs, SERVER against BASE; the two
# arguments are space-separated per-round µs per request, round by round.
ratio_summary() {
  python3 - "$1" "$2" "$3" <<'PY'
import random, statistics, sys
n = [float(x) for x in sys.argv[2].split()]
s = [float(x) for x in sys.argv[3].split()]
r = sorted(b / a for a, b in zip(n, s))
rng, k, boot = random.Random(1), len(n), []
for _ in range(4000):
    idx = [rng.randrange(k) for _ in range(k)]
    boot.append(sum(s[i] for i in idx) / sum(n[i] for i in idx))
boot.sort()
lo, hi = boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]
print(f"{sys.argv[1]} per round: min {r[0]:.2f}, median {statistics.median(r):.2f}, max {r[-1]:.2f}; "
      f"mean ratio {sum(s) / sum(n):.3f}, 95 % interval {lo:.3f}-{hi:.3f} (bootstrap over rounds)")
PY
}
