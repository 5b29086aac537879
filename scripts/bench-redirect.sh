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

NAME=bench-redirect
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
bench_begin
[ -x "$BIN" ] || { echo "bench-redirect: $BIN missing; run make build" >&2; exit 1; }

# --- refrouter: one node, one campaign, one link -------------------------------------------
start_node "$BIN" node
RP=$NODE_PORT; RPID=$NODE_PID; REF_URL=$NODE_URL

# --- nginx return 302 -------------------------------------------------------------------------
NP=$(port)
start_nginx nginx "$NP" "access_log off;"
NPID=$NGINX_WORKER

# --- nginx return 302 that also logs each request (its analogue of recording the click) ---------
LP=$(port)
start_nginx nginx-log "$LP" "$(nginx_click_log "$WORK/nginx-log")"
LPID=$NGINX_WORKER

# --- bare fasthttp 302 ------------------------------------------------------------------------
start_bare "$BIN" fasthttp
BP=$BARE_PORT; BPID=$BARE_PID

# --- canned 302 on edgehttp (refrouter's redirect engine, no redirect work) ---------------------
start_bare "$BIN" edgehttp
EP=$BARE_PORT; EPID=$BARE_PID

declare -A REQ CPU US
run() { # name pid url
  local name=$1
  measure "$2" "$3" "$SECS"
  REQ[$name]=$(( ${REQ[$name]:-0} + ROUND_REQS ))
  CPU[$name]=$(( ${CPU[$name]:-0} + ROUND_TICKS ))
  US[$name]="${US[$name]:-} $ROUND_US"
  printf '  %-10s round: %8d requests, %5d ticks\n' "$name" "$ROUND_REQS" "$ROUND_TICKS" >&2
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
    ratio_summary "$name/nginx" "${US[nginx]}" "${US[$name]}"
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
