#!/usr/bin/env bash
# Pull and push a ~300 MB, 5-layer image (fixture big.oci) through Debian's docker-registry
# on loopback: strata vs `skopeo copy` (and `docker pull/push` with --docker, which starts a
# private dockerd). Each tool starts from empty local storage and an empty target registry.
#
#   bench/registry-pull-push.sh [--docker] [--runs N]
# STRATA=path/to/strata picks the binary (default: target/release/strata).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STRATA=${STRATA:-$ROOT/target/release/strata}
FIX=${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}
RUNS=3
WITH_DOCKER=0
while [ $# -gt 0 ]; do
  case $1 in
    --docker) WITH_DOCKER=1; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$STRATA" ] || { echo "no strata binary at $STRATA (cargo build --release -p strata-cli)" >&2; exit 1; }
[ -d "$FIX/big.oci" ] || { echo "SKIPPED: $FIX/big.oci missing: run scripts/fixtures.sh" >&2; exit 0; }
W=$(mktemp -d /tmp/strata-bench.XXXXXX)
cleanup() {
  scripts/peers.sh registry stop "$W/src" || true
  scripts/peers.sh registry stop "$W/dst" || true
  [ "$WITH_DOCKER" = 1 ] && scripts/peers.sh dockerd stop "$W/dockerd" || true
  rm -rf "$W"
}
trap cleanup EXIT
eval "$(scripts/peers.sh registry start "$W/src" | sed 's/^/SRC_/')"
eval "$(scripts/peers.sh registry start "$W/dst" | sed 's/^/DST_/')"
SRC=$SRC_REGISTRY_ADDR DST=$DST_REGISTRY_ADDR
skopeo copy -q --dest-tls-verify=false "oci:$FIX/big.oci" "docker://$SRC/bench/big:1"
SIZE=$(du -sb "$FIX/big.oci" | cut -f1)
echo "image: $FIX/big.oci ($((SIZE / 1000000)) MB, $(ls "$FIX/big.oci/blobs/sha256" | wc -l) blobs); $RUNS runs each, best shown"

now() { date +%s.%N; }
best=()
measure() { # name setup-cmd cmd...
  local name=$1 setup=$2; shift 2
  local b="" t0 t1 t
  for ((i = 0; i < RUNS; i++)); do
    eval "$setup"
    t0=$(now); "$@" >/dev/null 2>&1 || { echo "$name failed: $*" >&2; "$@" >&2; exit 1; }; t1=$(now)
    t=$(echo "$t1 - $t0" | bc)
    if [ -z "$b" ] || [ "$(echo "$t < $b" | bc)" = 1 ]; then b=$t; fi
  done
  printf '%-28s %6.2f s  %6.0f MB/s\n' "$name" "$b" "$(echo "$SIZE / $b / 1000000" | bc -l)"
  best+=("$name=$b")
}

fresh_store() { rm -rf "$W/store"; }
fresh_oci() { rm -rf "$W/oci"; }
fresh_dst() { scripts/peers.sh registry stop "$W/dst" >/dev/null 2>&1; rm -rf "$W/dst/registry"; eval "$(scripts/peers.sh registry start "$W/dst" "${DST##*:}" 2>/dev/null | sed 's/^/DST_/')"; }

echo "== pull"
measure "strata pull" fresh_store env STRATA_ROOT="$W/store" "$STRATA" pull -q "$SRC/bench/big:1"
measure "skopeo copy -> oci:" fresh_oci skopeo copy -q --src-tls-verify=false "docker://$SRC/bench/big:1" "oci:$W/oci:big"
if [ "$WITH_DOCKER" = 1 ]; then
  eval "$(scripts/peers.sh dockerd start "$W/dockerd" --insecure-registry "$SRC" --insecure-registry "$DST")"
  export DOCKER_HOST
  measure "docker pull" "/usr/bin/docker rmi -f $SRC/bench/big:1 >/dev/null 2>&1 || true" /usr/bin/docker pull -q "$SRC/bench/big:1"
fi

echo "== push (to an empty registry each run)"
env STRATA_ROOT="$W/store" "$STRATA" pull -q "$SRC/bench/big:1" >/dev/null
env STRATA_ROOT="$W/store" "$STRATA" tag "$SRC/bench/big:1" "$DST/bench/big:1"
rm -rf "$W/oci"; skopeo copy -q --src-tls-verify=false "docker://$SRC/bench/big:1" "oci:$W/oci:big"
measure "strata push" fresh_dst env STRATA_ROOT="$W/store" "$STRATA" push -q "$DST/bench/big:1"
measure "skopeo copy oci: ->" fresh_dst skopeo copy -q --dest-tls-verify=false "oci:$W/oci:big" "docker://$DST/bench/big:1"
if [ "$WITH_DOCKER" = 1 ]; then
  /usr/bin/docker tag "$SRC/bench/big:1" "$DST/bench/big:1"
  measure "docker push" fresh_dst /usr/bin/docker push -q "$DST/bench/big:1"
fi
