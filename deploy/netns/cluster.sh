#!/usr/bin/env bash
# cluster.sh BIN: run a three-region refrouter cluster (hk-1 ap-east, fra-1
# eu-central, iad-1 us-east) as three hosts in network namespaces made by
# netns.sh, until Ctrl-C or SIGTERM; then kill the nodes and delete the
# namespaces.
# Used by `make cluster-netns`. Needs root. RR_RUN names the run (default
# demo); the hosts are 10.213.0.1-3, reachable only from inside the run's
# namespaces (netns.sh exec).
set -euo pipefail

bin="$(realpath "${1:?usage: cluster.sh BIN}")"
here="$(cd "$(dirname "$0")" && pwd)"
run="${RR_RUN:-demo}"
net=(bash "$here/netns.sh" -r "$run")
work="$(mktemp -d /tmp/refrouter-netns.XXXXXX)"

cleanup() {
	"${net[@]}" down || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${net[@]}" up 3

token() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
admin="$(token)"
platform="$(token)"
key="$(head -c 32 /dev/urandom | base64)"
gossip_key="$(head -c 32 /dev/urandom | base64)"
cluster_key="$(head -c 32 /dev/urandom | base64)"
names=(hk-1 fra-1 iad-1)
regions=(ap-east eu-central us-east)
lats=(22.32 50.11 38.95)
lons=(114.17 8.68 -77.45)

for i in 1 2 3; do
	ip="10.213.0.$i"
	seeds=""
	for j in 1 2 3; do
		[[ $j == "$i" ]] || seeds+="10.213.0.$j:7946, "
	done
	cat >"$work/h$i.yaml" <<CFG
name: ${names[i - 1]}
region: ${regions[i - 1]}
lat: ${lats[i - 1]}
lon: ${lons[i - 1]}
public_url: http://$ip:8080
listen: $ip:8080
gossip: $ip:7946
cluster: $ip:7947
advertise: $ip
seeds: [${seeds%, }]
profile: lan
voter: true
bootstrap_expect: 3
data_dir: $work/h$i-data
tokens:
  - {token: "$admin", role: admin}
  - {token: "$platform", role: platform}
secrets:
  - {gen: 1, key: "$key"}
gossip_key: "$gossip_key"
cluster_key: "$cluster_key"
CFG
	"${net[@]}" exec "$i" "$bin" serve --config "$work/h$i.yaml" >"$work/h$i.log" 2>&1 &
done

if command -v curl >/dev/null; then
	for i in 1 2 3; do
		for _ in $(seq 120); do
			if "${net[@]}" exec "$i" curl -fsS -m 1 -o /dev/null "http://10.213.0.$i:8080/readyz" 2>/dev/null; then
				echo "host $i (${names[i - 1]}) ready"
				break
			fi
			sleep 0.5
		done
	done
fi

cat <<INFO

refrouter cluster "$run": hk-1 10.213.0.1, fra-1 10.213.0.2, iad-1 10.213.0.3 (HTTP :8080)
  admin token:    $admin
  platform token: $platform
  logs and data:  $work
Try (from another shell, as root):
  $here/netns.sh -r $run exec 2 curl -s http://10.213.0.1:8080/readyz
  $here/netns.sh -r $run cut 3      # partition iad-1;  heal 3 to undo
  $here/netns.sh -r $run kill 3     # kill iad-1; restart it with:
  $here/netns.sh -r $run exec 3 $bin serve --config $work/h3.yaml
Ctrl-C stops the cluster and removes the namespaces.
INFO
wait
