#!/usr/bin/env bash
# A/B of refrouter builds: nginx `return 302` and one node of each build (set up as in
# bench-redirect.sh: one campaign, one link, demo GeoIP, forwarded address), each pinned to core 0,
# wrk on core 1, interleaved round by round with the order rotating. Reports each build's CPU per
# request against nginx and against the first build, with 95 % intervals (bootstrap over rounds).
# Short rounds, many of them, pair the builds closely in time, which is what a shared machine's
# drifting load needs to show differences of a few percent.
#
# usage: scripts/ab-redirect.sh ROUNDS SECONDS BIN [BIN...]   (from the repository root)
#   e.g. git worktree add /tmp/base HEAD~1 && (cd /tmp/base && go build -o /tmp/rr-base ./cmd/refrouter)
#        go build -o /tmp/rr-new ./cmd/refrouter && scripts/ab-redirect.sh 30 2 /tmp/rr-base /tmp/rr-new
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,11p "$0" >&2; exit 2; }
ROUNDS=$1; SECS=$2; shift 2; BINS=("$@")
NAME=ab-redirect
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
bench_begin

NAMES=(nginx); declare -A SPID SURL US
for i in "${!BINS[@]}"; do
  [ -x "${BINS[$i]}" ] || { echo "ab-redirect: ${BINS[$i]} is not an executable" >&2; exit 1; }
  start_node "${BINS[$i]}" "node$i"
  name="$i:$(basename "${BINS[$i]}")"
  NAMES+=("$name"); SPID[$name]=$NODE_PID; SURL[$name]=$NODE_URL
done
NP=$(port)
start_nginx nginx "$NP" "access_log off;"
SPID[nginx]=$NGINX_WORKER; SURL[nginx]="http://127.0.0.1:$NP/$CODE"

k=${#NAMES[@]}
for r in $(seq 1 "$ROUNDS"); do
  line="round $r/$ROUNDS:"
  for j in $(seq 0 $((k - 1))); do
    name=${NAMES[$(( (r - 1 + j) % k ))]}
    measure "${SPID[$name]}" "${SURL[$name]}" "$SECS"
    US[$name]="${US[$name]:-} $ROUND_US"
    line="$line $name $ROUND_US µs"
  done
  echo "$line" >&2
done

for name in "${NAMES[@]:1}"; do
  ratio_summary "$name/nginx" "${US[nginx]}" "${US[$name]}"
done
for name in "${NAMES[@]:2}"; do
  ratio_summary "$name/${NAMES[1]}" "${US[${NAMES[1]}]}" "${US[$name]}"
done
