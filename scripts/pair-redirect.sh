#!/usr/bin/env bash
# Paired redirect cost: two servers on core 0 at the same time, each driven by its own wrk
# (-t1 -c32) on core 1, so both see the same machine at the same moment. Each server's CPU is
# its threads' time on the CPU from /proc/PID/task/*/schedstat (nanoseconds, softirq work done
# in its context included), divided by the requests its wrk made. The sequential rounds of
# bench-redirect.sh and ab-redirect.sh compare moments seconds apart, and on a shared VM those
# moments differ by more than the few percent in question; here the per-round ratio holds within
# a few percent. A server is `nginx` (return 302), `nginx-log` (the same, writing an access log
# line per request as bench-redirect.sh's nginx + access_log does), a refrouter binary (one node set up as in
# bench-redirect.sh: one campaign, one link, demo GeoIP, forwarded address, phone user agent), or
# canned:BIN, BIN's canned 302 on its redirect engine (`BIN bare-302 --engine edgehttp`: the
# engine's own cost, without the redirect's work).
#
# usage: scripts/pair-redirect.sh ROUNDS SECONDS A B    (from the repository root)
#   e.g. make build && scripts/pair-redirect.sh 10 5 bin/refrouter nginx
#   A check of the method: scripts/pair-redirect.sh 10 5 nginx nginx gives 1.00 within its interval.
set -euo pipefail
[ $# -eq 4 ] || { sed -n 2,16p "$0" >&2; exit 2; }
ROUNDS=$1; SECS=$2; SERVERS=("$3" "$4")
NAME=pair-redirect
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
bench_begin

PID_=(); URL_=(); LABEL=()
for i in 0 1; do
  s=${SERVERS[$i]}
  if [ "$s" = nginx ] || [ "$s" = nginx-log ]; then
    p=$(port) log="access_log off;"
    [ "$s" = nginx-log ] && log=$(nginx_click_log "$WORK/nginx$i")
    start_nginx "nginx$i" "$p" "$log"
    PID_+=("$NGINX_WORKER"); URL_+=("http://127.0.0.1:$p/bench0123456")
  elif [ "${s#canned:}" != "$s" ]; then
    start_bare "${s#canned:}" edgehttp
    PID_+=("$BARE_PID"); URL_+=("http://127.0.0.1:$BARE_PORT/bench0123456")
  else
    [ -x "$s" ] || { echo "pair-redirect: $s is neither nginx nor an executable" >&2; exit 1; }
    start_node "$s" "node$i"
    PID_+=("$NODE_PID"); URL_+=("$NODE_URL")
  fi
  if [ "${s#canned:}" != "$s" ]; then LABEL+=("$i:canned-$(basename "${s#canned:}")"); else LABEL+=("$i:$(basename "$s")"); fi
done

hdr=(-H 'X-Forwarded-For: 203.0.113.10' -H 'User-Agent: Mozilla/5.0 (iPhone) Mobile')
w=()   # a 2 s warm-up of both
for i in 0 1; do taskset -c 1 wrk -t1 -c32 -d2s "${hdr[@]}" "${URL_[$i]}" >/dev/null & w+=($!); done
wait "${w[@]}"

US=("" "")
for r in $(seq 1 "$ROUNDS"); do
  c0=(); for i in 0 1; do c0+=("$(cpu_ns "${PID_[$i]}")"); done
  w=()
  for i in 0 1; do
    taskset -c 1 wrk -t1 -c32 -d"${SECS}s" "${hdr[@]}" "${URL_[$i]}" >"$WORK/wrk$i.out" &
    w+=($!)
  done
  wait "${w[@]}"
  line="round $r/$ROUNDS:"
  for i in 0 1; do
    reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk$i.out")
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "pair-redirect: wrk made no requests to ${LABEL[$i]}" >&2; exit 1; }
    us=$(python3 -c "print(f'{($(cpu_ns "${PID_[$i]}") - ${c0[$i]}) / 1e3 / $reqs:.3f}')")
    US[$i]="${US[$i]} $us"
    line="$line ${LABEL[$i]} $reqs requests $us µs"
  done
  echo "$line" >&2
done
ratio_summary "${LABEL[0]}/${LABEL[1]}" "${US[1]}" "${US[0]}"
