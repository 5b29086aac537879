#!/usr/bin/env bash
# netns.sh: a multi-host network on one machine, for refrouter failure drills.
#
# Creates N "hosts" as network namespaces rr-<run>-h1..hN, each with a veth
# (eth0, address 10.213.0.<i>/24, loopback up) plugged into a bridge that
# lives in its own "switch" namespace rr-<run>-sw. Nothing is created or
# addressed in the root namespace, so the 10.213.0.0/24 range exists only
# inside these namespaces.
#
# Usage: netns.sh [-r RUN] COMMAND [ARGS]
#   up N            create hosts 1..N (fails if the run already exists)
#   down            kill processes in the run's namespaces and delete them
#                   (idempotent: succeeds when nothing is left)
#   cut HOST        unplug host HOST: its switch port goes down, packets drop
#   heal HOST       plug it back in
#   exec HOST CMD.. run CMD inside host HOST's namespace
#   kill HOST       SIGKILL every process in host HOST (restart: exec again)
#   addr HOST       print host HOST's address
#   list            list the run's namespaces
# RUN (default: $RR_RUN, else "demo") is 1-12 characters of [a-z0-9].
# Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) and iproute2.
set -euo pipefail

run="${RR_RUN:-demo}"
if [[ "${1:-}" == "-r" ]]; then
	run="${2:?-r needs a run name}"
	shift 2
fi
if [[ ! "$run" =~ ^[a-z0-9]{1,12}$ ]]; then
	echo "netns.sh: run name must be 1-12 characters of [a-z0-9], got \"$run\"" >&2
	exit 2
fi

prefix="rr-${run}"
sw="${prefix}-sw"
subnet="10.213.0"

die() {
	echo "netns.sh: $*" >&2
	exit 1
}

host_ns() { echo "${prefix}-h$1"; }

check_host() {
	[[ "$1" =~ ^[1-9][0-9]*$ ]] || die "host must be a number, got \"$1\""
	ip netns list | awk '{print $1}' | grep -qx "$(host_ns "$1")" || die "no host $1 in run $run"
}

namespaces() {
	ip netns list | awk '{print $1}' | grep -E "^${prefix}-(sw|h[0-9]+)$" || true
}

kill_ns() {
	# Never kill this script, its parent or the pids in NETNS_KEEP_PIDS: a
	# caller may have a thread inside the namespace for a moment (a Go test
	# dialing into a host), and `ip netns pids` then lists the whole process.
	local pids keep p
	keep=" $$ $PPID ${NETNS_KEEP_PIDS:-} "
	pids=""
	for p in $(ip netns pids "$1" 2>/dev/null || true); do
		[[ "$keep" == *" $p "* ]] || pids="$pids $p"
	done
	if [[ -n "$pids" ]]; then
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
	fi
}

cmd_down() {
	local ns
	for ns in $(namespaces); do
		kill_ns "$ns"
	done
	for ns in $(namespaces); do
		ip netns del "$ns" 2>/dev/null || true
	done
	[[ -z "$(namespaces)" ]] || die "namespaces left behind: $(namespaces | tr '\n' ' ')"
}

cmd_up() {
	local n="${1:?up needs N}" i ns
	[[ "$n" =~ ^[1-9][0-9]*$ ]] && ((n <= 250)) || die "N must be 1..250, got \"$n\""
	[[ -z "$(namespaces)" ]] || die "run $run already exists; use down first"
	# A half-built network is torn down, never left behind.
	trap 'cmd_down; exit 1' ERR INT TERM
	ip netns add "$sw"
	ip -n "$sw" link set lo up
	ip -n "$sw" link add br0 type bridge
	ip -n "$sw" link set br0 up
	for ((i = 1; i <= n; i++)); do
		ns="$(host_ns "$i")"
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip -n "$sw" link add "h$i" type veth peer name eth0 netns "$ns"
		ip -n "$sw" link set "h$i" master br0 up
		ip -n "$ns" addr add "${subnet}.${i}/24" dev eth0
		ip -n "$ns" link set eth0 up
	done
	trap - ERR INT TERM
}

set_port() {
	check_host "$1"
	ip -n "$sw" link set "h$1" "$2"
}

[[ $# -ge 1 ]] || die "usage: netns.sh [-r RUN] up N|down|cut HOST|heal HOST|exec HOST CMD...|kill HOST|addr HOST|list"
cmd="$1"
shift
case "$cmd" in
up) cmd_up "$@" ;;
down) cmd_down ;;
cut) set_port "${1:?cut needs HOST}" down ;;
heal) set_port "${1:?heal needs HOST}" up ;;
exec)
	h="${1:?exec needs HOST}"
	shift
	[[ $# -ge 1 ]] || die "exec needs a command"
	check_host "$h"
	exec ip netns exec "$(host_ns "$h")" "$@"
	;;
kill)
	check_host "${1:?kill needs HOST}"
	kill_ns "$(host_ns "$1")"
	;;
addr)
	check_host "${1:?addr needs HOST}"
	echo "${subnet}.$1"
	;;
list) namespaces ;;
*) die "unknown command \"$cmd\"" ;;
esac
