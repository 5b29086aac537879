#!/usr/bin/env bash
# Redirect cost: refrouter (full path: verify + geo + click record) against nginx `return 302`,
# a bare fasthttp 302 server and a canned 302 on refrouter's own redirect engine (edgehttp), each
# pinned to core 0 with taskset, the load generator (wrk) pinned to core 1, interleaved (the order
# rotating from round to round), in one run. Reports requests/s and the server's CPU time per
# request (utime+stime from /proc/PID/stat over the run, divided by the requests wrk made), and
# the ratios to nginx. Then the latency at half of refrouter's measured throughput from
# `refrouter bench redirect` (open loop, HDR histogram).
#
# usage: scripts/bench-redirect.sh [ROUNDS] [SECONDS]     (from the repository root; needs root for apt-get)
set -euo pipefail
ROUNDS=${1:-2}
SECS=${2:-10}
BIN=${BIN:-bin/refrouter}
OUT=${OUT:-bench-results}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/rr-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} with apt-get" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    echo "bench-redirect: cannot install ${need[*]} (apt-get failed); install them and run again" >&2
    exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$BIN" ] || { echo "bench-redirect: $BIN missing; run make build" >&2; exit 1; }
CLK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_http() { for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# --- refrouter: one node, one campaign, one link -------------------------------------------
RP=$(port); GP=$(port); CP=$(port)
"$BIN" geo build-demo "$WORK/geo.mmdb"
cat >"$WORK/node.yaml" <<YAML
name: bench-1
region: eu-central
lat: 50.11
lon: 8.68
listen: 127.0.0.1:$RP
gossip: 127.0.0.1:$GP
cluster: 127.0.0.1:$CP
profile: local
bootstrap_expect: 1
data_dir: $WORK/data
log_level: error
tokens: [{token: bench-admin-token-0001, role: admin}, {token: bench-platform-token-01, role: platform}]
secrets: [{gen: 1, key: "$(head -c 32 /dev/urandom | base64)"}]
geoip: [$WORK/geo.mmdb]
trusted_proxies: [127.0.0.0/8]
YAML
taskset -c 0 "$BIN" serve --config "$WORK/node.yaml" 2>"$WORK/node.log" &
RPID=$!; PIDS+=("$RPID")
for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$RP/readyz" && break; sleep 0.05; done
curl -sf -H 'Authorization: Bearer bench-admin-token-0001' "http://127.0.0.1:$RP/v1/campaigns" -d '{
  "id":"bench","destination":"https://live.example.com/room/42","allowed_hosts":["live.example.com"],
  "starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z","budget":{"value":1000000},
  "invitee_reward":{"value":1},"inviter_rewards":[{"from":1,"value":1}],"attribution_window":"168h"}' >/dev/null
CODE=$(curl -sf -H 'Authorization: Bearer bench-platform-token-01' "http://127.0.0.1:$RP/v1/campaigns/bench/links" -d '{"inviter":"alice"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
REF_URL="http://127.0.0.1:$RP/$CODE"

# --- nginx return 302 -------------------------------------------------------------------------
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
NP=$(port)
start_nginx nginx "$NP" "access_log off;"
NPID=$NGINX_WORKER

# --- nginx return 302 that also logs each request (its analogue of recording the click) ---------
LP=$(port)
start_nginx nginx-log "$LP" "log_format click '\$msec \$http_x_forwarded_for \"\$request_uri\" \"\$http_user_agent\"';
  access_log $WORK/nginx-log/access.log click buffer=64k flush=1s;"
LPID=$NGINX_WORKER

# --- bare fasthttp 302 ------------------------------------------------------------------------
BP=$(port)
taskset -c 0 "$BIN" bare-302 --listen "127.0.0.1:$BP" &
BPID=$!; PIDS+=("$BPID")
wait_http "http://127.0.0.1:$BP/x"

# --- canned 302 on edgehttp (refrouter's redirect engine, no redirect work) ---------------------
EP=$(port)
taskset -c 0 "$BIN" bare-302 --engine edgehttp --listen "127.0.0.1:$EP" &
EPID=$!; PIDS+=("$EPID")
wait_http "http://127.0.0.1:$EP/x"

declare -A REQ CPU ROUND_US
run() { # name pid url
  local name=$1 pid=$2 url=$3 before after out reqs
  taskset -c 1 wrk -t1 -c64 -d2s -H 'X-Forwarded-For: 203.0.113.10' -H 'User-Agent: Mozilla/5.0 (iPhone) Mobile' "$url" >/dev/null
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" -H 'X-Forwarded-For: 203.0.113.10' -H 'User-Agent: Mozilla/5.0 (iPhone) Mobile' "$url")
  after=$(cpu_ticks "$pid")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  REQ[$name]=$(( ${REQ[$name]:-0} + reqs ))
  CPU[$name]=$(( ${CPU[$name]:-0} + after - before ))
  ROUND_US[$name]="${ROUND_US[$name]:-} $(python3 -c "print($((after - before))/$CLK*1e6/$reqs)")"
  printf '  %-10s round: %8d requests, %5d ticks\n' "$name" "$reqs" "$((after - before))" >&2
}
# Each round starts one server later than the one before, so that no server always runs first or
# last in a round (the machine's load drifts within a round too).
SERVERS=(nginx nginxlog bare edge refrouter)
declare -A SPID=([nginx]=$NPID [nginxlog]=$LPID [bare]=$BPID [edge]=$EPID [refrouter]=$RPID)
declare -A SURL=([nginx]="http://127.0.0.1:$NP/$CODE" [nginxlog]="http://127.0.0.1:$LP/$CODE"
  [bare]="http://127.0.0.1:$BP/$CODE" [edge]="http://127.0.0.1:$EP/$CODE" [refrouter]="$REF_URL")
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for k in 0 1 2 3 4; do
    name=${SERVERS[$(( (r - 1 + k) % 5 ))]}
    run "$name" "${SPID[$name]}" "${SURL[$name]}"
  done
done

{
  echo "| server (pinned to core 0; wrk -t1 -c64 on core 1) | requests/s | CPU µs per request | vs nginx |"
  echo "|---|---:|---:|---:|"
  ncpu=$(python3 -c "print(${CPU[nginx]}/$CLK*1e6/${REQ[nginx]})")
  for name in nginx nginxlog bare edge refrouter; do
    python3 - "$name" "${REQ[$name]}" "${CPU[$name]}" "$CLK" "$ROUNDS" "$SECS" "$ncpu" <<'PY'
import sys
name, reqs, ticks, clk, rounds, secs, ncpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
label = {"nginx": "nginx `return 302`", "nginxlog": "nginx `return 302` + buffered access_log", "bare": "bare fasthttp 302", "edge": "canned 302 on edgehttp (refrouter's engine)", "refrouter": "refrouter (verify + geo + click record)"}[name]
us = ticks / clk * 1e6 / reqs
print(f"| {label} | {reqs / (rounds * secs):,.0f} | {us:.2f} | {us / ncpu:.2f}× |")
PY
  done
  # Ratios per round (each server against nginx in the same round): the spread says how much
  # of a difference the shared machine's noise can hide.
  echo
  for name in nginxlog bare edge refrouter; do
    python3 - "$name" "${ROUND_US[nginx]}" "${ROUND_US[$name]}" <<'PY'
import random, statistics, sys
n = [float(x) for x in sys.argv[2].split()]
s = [float(x) for x in sys.argv[3].split()]
r = sorted(b / a for a, b in zip(n, s))
# 95 % interval of the ratio of the mean per-request costs, resampling rounds (bootstrap, fixed seed).
rng, k, boot = random.Random(1), len(n), []
for _ in range(4000):
    idx = [rng.randrange(k) for _ in range(k)]
    boot.append(sum(s[i] for i in idx) / sum(n[i] for i in idx))
boot.sort()
lo, hi = boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]
print(f"{sys.argv[1]}/nginx per round: min {r[0]:.2f}, median {statistics.median(r):.2f}, max {r[-1]:.2f}; "
      f"mean ratio {sum(s) / sum(n):.3f}, 95 % interval {lo:.3f}-{hi:.3f} (bootstrap over rounds)")
PY
  done
} | tee "$OUT/redirect-cpu.md"

# Latency at half of refrouter's throughput, open loop, the same rate against each server, so
# that the load generator's own share of the tail shows in the baselines too.
HALF=$(( REQ[refrouter] / (ROUNDS * SECS) / 2 ))
echo >&2; echo "latency at half of refrouter's throughput ($HALF req/s), refrouter bench redirect:" >&2
taskset -c 1 "$BIN" bench redirect \
  --target "nginx@eu-central=http://127.0.0.1:$NP" --target "bare@eu-central=http://127.0.0.1:$BP" \
  --target "edge@eu-central=http://127.0.0.1:$EP" \
  --target "refrouter@eu-central=http://127.0.0.1:$RP" --codes <(echo "$CODE") \
  --rate "$HALF" --connections 64 --duration "${SECS}s" --warmup 2s --cidrs 203.0.113.0/24,198.51.100.0/24 \
  --out "$OUT" | tee "$OUT/redirect-latency.txt"
