#!/usr/bin/env bash
# Load test: Strata's registry and Debian's docker-registry (distribution 2.8) side by side,
# one at a time on loopback with the same client (wrk, bounded duration).
#   manifest GET req/s (by tag), blob GET throughput of a 100 MB blob,
#   then 50 concurrent pushes of distinct 20 MB images (all must succeed and pull back intact).
# Usage: bench/registry/run.sh [seconds per wrk run, default 10]
set -euo pipefail
D=${1:-10}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
T=${CARGO_TARGET_DIR:-/work/targets/regserver}
BIN=${STRATA_REGISTRY_BIN:-}
if [ -z "$BIN" ]; then
  (cd "$HERE" && CARGO_TARGET_DIR=$T cargo build -q --release -p strata-registry-server --example strata-registry)
  BIN=$T/release/examples/strata-registry
fi
W=$(mktemp -d /tmp/regbench.XXXXXX)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$W"' EXIT
wait_up() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1/v2/" && return 0; sleep 0.1; done; echo "no registry at $1" >&2; exit 1; }
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"

cpu_ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
bench() { # name url
  local name=$1 url=$2
  local layer
  layer=$(python3 "$HERE/bench/registry/push.py" "$url" bench/img latest 100000000)
  echo "== $name"
  wrk -t2 -c64 -d${D}s -H "$ACCEPT" "$url/v2/bench/img/manifests/latest" | grep -E 'Requests/sec|Non-2xx|Socket errors' | sed 's/^/  manifest GET: /'
  local t0 t1
  t0=$(cpu_ticks)
  /usr/bin/time -f '%U %S' -o "$W/wrk.cpu" wrk -t2 -c4 -d${D}s "$url/v2/bench/img/blobs/$layer" > "$W/blob.txt"
  t1=$(cpu_ticks)
  grep -E 'Transfer/sec|Requests/sec|Non-2xx|read$' "$W/blob.txt" | sed 's/^/  100 MB blob GET: /'
  # The client (wrk) shares the two cores, so throughput is partly client-bound; the
  # server's own CPU time per GB shows the cost of serving independent of that.
  awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/requests in/ { gb=$5; sub(/GB/,"",gb); if ($5 ~ /MB/) {sub(/MB/,"",gb); gb/=1024}; printf "  100 MB blob GET: server CPU %.2f s for %.1f GB = %.3f CPU-s/GB\n", t/hz, gb, t/hz/gb
    getline c < cpu; split(c, u, " "); printf "  100 MB blob GET: client (wrk) CPU %.2f s = %.3f CPU-s/GB\n", u[1]+u[2], (u[1]+u[2])/gb }' cpu="$W/wrk.cpu" "$W/blob.txt"
  # The same blob through a client that discards the body in the kernel (MSG_TRUNC):
  # the client's cost no longer hides the server's.
  t0=$(cpu_ticks)
  python3 "$HERE/bench/registry/blobget.py" "$url/v2/bench/img/blobs/$layer" "$D" 4 > "$W/blobget.txt"
  t1=$(cpu_ticks)
  sed 's/^/  100 MB blob GET (MSG_TRUNC client): /' "$W/blobget.txt"
  awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '{ printf "  100 MB blob GET (MSG_TRUNC client): server CPU %.2f s = %.3f CPU-s/GB\n", t/hz, t/hz/($1/1e9) }' "$W/blobget.txt"
  python3 "$HERE/bench/registry/push.py" --concurrent 50 "$url" 20000000 | sed 's/^/  /'
}

"$BIN" serve --addr 127.0.0.1:5091 --root "$W/strata" --log-level error & PID=$!
wait_up http://127.0.0.1:5091
bench strata http://127.0.0.1:5091
stop

printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:5092}\n' "$W/dist" > "$W/registry.yml"
/usr/bin/docker-registry serve "$W/registry.yml" 2>"$W/dist.log" & PID=$!
wait_up http://127.0.0.1:5092
bench docker-registry http://127.0.0.1:5092
stop
