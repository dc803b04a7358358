#!/usr/bin/env bash
# Save/load benchmark of the image store: strata against docker, podman and
# skopeo on the same image, each timed by hyperfine. See bench/README.md.
#
#   bench/save-load.sh [--image big|debian|busybox] [--runs N] [--warmup N]
#                      [--tools strata,docker,podman,skopeo] [--json FILE] [--keep]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PEERS=$REPO/scripts/peers.sh
DOCKER=/usr/bin/docker # another docker client may come first on PATH

image=big runs=5 warmup=1 tools=strata,docker,podman,skopeo json="" keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --image) image=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "save-load: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'save-load: %s\n' "$*" >&2; }
die() { printf 'save-load: error: %s\n' "$*" >&2; exit 1; }
want() { [[ ",$tools," == *",$1,"* ]]; }

command -v hyperfine >/dev/null || die "hyperfine missing: run scripts/install-deps.sh"
command -v jq >/dev/null || die "jq missing: run scripts/install-deps.sh"

STRATA_BIN=${STRATA_BIN:-$REPO/target/release/strata}
case $STRATA_BIN in /*) ;; *) STRATA_BIN=$REPO/$STRATA_BIN ;; esac

FX=$("$REPO/scripts/fixtures.sh" --print-dir) || die "building the fixtures failed"
case $image in
  big) ref=big:latest ;;
  debian) ref=debian:bookworm ;;
  busybox) ref=busybox:latest ;;
  *) die "--image must be big, debian or busybox" ;;
esac
ARCHIVE=$FX/$image.docker.tar
LAYOUT=$FX/$image.oci
{ [ -f "$ARCHIVE" ] && [ -d "$LAYOUT" ]; } || die "fixture $ARCHIVE or $LAYOUT missing"

# Short path: dockerd's unix sockets must fit in 108 bytes.
S=$(mktemp -d /tmp/strata-bench.XXXXXX)
DOCKERD_UP=0 PODMAN_UP=0
cleanup() {
  [ $DOCKERD_UP -eq 0 ] || "$PEERS" dockerd stop "$S/dockerd" || true
  [ $PODMAN_UP -eq 0 ] || "$PEERS" podman-reset "$S/podman" || true
  if [ $keep -eq 1 ]; then log "kept scratch dir $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT

RESULTS=$S/results.tsv # tool, op, median, mean, stddev, runs
: >"$RESULTS"

# bench TOOL OP PREPARE COMMAND: time COMMAND (after PREPARE before each run).
bench() {
  local tool=$1 op=$2 prepare=$3 cmd=$4 out=$S/$1-$2.json
  log "$tool $op: $cmd"
  if ! hyperfine --style basic --runs "$runs" --warmup "$warmup" --prepare "$prepare" \
    --export-json "$out" --command-name "$tool $op" "$cmd" >"$S/$tool-$op.log" 2>&1; then
    log "skipping $tool $op: the command failed; last lines of its output:"
    tail -n 5 "$S/$tool-$op.log" | sed 's/^/    /' >&2
    return 0
  fi
  jq -r --arg t "$tool" --arg o "$op" \
    '.results[0] | [$t, $o, .median, .mean, .stddev, (.times | length)] | @tsv' "$out" >>"$RESULTS"
}

# --- strata ---------------------------------------------------------------------
if want strata; then
  if [ ! -x "$STRATA_BIN" ]; then
    log "skipping strata: no binary at $STRATA_BIN (cargo build --release -p strata-cli, or set STRATA_BIN)"
  else
    # load: a fresh store each run, as after a clean install.
    bench strata load "rm -rf $S/strata-load" \
      "STRATA_ROOT=$S/strata-load $STRATA_BIN load -i $ARCHIVE"
    # save: from a store that holds the image.
    if STRATA_ROOT=$S/strata-save "$STRATA_BIN" load -i "$ARCHIVE" >"$S/strata-preload.log" 2>&1; then
      bench strata save "rm -f $S/strata-out.tar" \
        "STRATA_ROOT=$S/strata-save $STRATA_BIN save -o $S/strata-out.tar $ref"
    else
      log "skipping strata save: loading the image first failed:"
      tail -n 5 "$S/strata-preload.log" | sed 's/^/    /' >&2
    fi
    rm -rf "$S/strata-load" "$S/strata-save" "$S/strata-out.tar"
  fi
fi

# --- docker (private dockerd, see scripts/peers.sh) ------------------------------
if want docker; then
  if ! env_out=$("$PEERS" dockerd start "$S/dockerd" 2>"$S/dockerd-start.log"); then
    log "skipping docker: dockerd did not start:"
    tail -n 5 "$S/dockerd-start.log" | sed 's/^/    /' >&2
  else
    DOCKERD_UP=1
    sock=$(sed -n 's/^DOCKER_HOST=//p' <<<"$env_out")
    D="$DOCKER -H $sock"
    # rmi removes the layers too, so each load writes them all again.
    bench docker load "$D rmi -f $ref >/dev/null 2>&1 || true" "$D load -q -i $ARCHIVE"
    if $D load -q -i "$ARCHIVE" >/dev/null 2>&1; then
      bench docker save "rm -f $S/docker-out.tar" "$D save -o $S/docker-out.tar $ref"
    else
      log "skipping docker save: docker load failed"
    fi
    $D rmi -f "$ref" >/dev/null 2>&1 || true
    rm -f "$S/docker-out.tar"
    "$PEERS" dockerd stop "$S/dockerd"
    DOCKERD_UP=0
  fi
fi

# --- podman (private storage, see scripts/peers.sh) ------------------------------
if want podman; then
  if ! command -v podman >/dev/null; then
    log "skipping podman: not installed"
  else
    podman_env=$("$PEERS" podman-env "$S/podman")
    PODMAN_UP=1
    # The exports only apply to the commands hyperfine runs (through sh).
    P="env $(sed -n 's/^export //p' <<<"$podman_env" | tr '\n' ' ')podman"
    bench podman load "$P rmi -f $ref >/dev/null 2>&1 || true" "$P load -q -i $ARCHIVE"
    if $P load -q -i "$ARCHIVE" >/dev/null 2>&1; then
      bench podman save "rm -f $S/podman-out.tar" "$P save -q -o $S/podman-out.tar $ref"
    else
      log "skipping podman save: podman load failed"
    fi
    rm -f "$S/podman-out.tar"
    "$PEERS" podman-reset "$S/podman"
    PODMAN_UP=0
  fi
fi

# --- skopeo (no store: archive <-> OCI layout is the nearest equivalent) ---------
if want skopeo; then
  if ! command -v skopeo >/dev/null; then
    log "skipping skopeo: not installed"
  else
    bench skopeo load "rm -rf $S/skopeo.oci" \
      "skopeo copy -q docker-archive:$ARCHIVE oci:$S/skopeo.oci:latest"
    bench skopeo save "rm -f $S/skopeo-out.tar" \
      "skopeo copy -q oci:$LAYOUT:latest docker-archive:$S/skopeo-out.tar:$ref"
    rm -rf "$S/skopeo.oci" "$S/skopeo-out.tar"
  fi
fi

# --- report ----------------------------------------------------------------------
[ -s "$RESULTS" ] || die "no benchmark ran"
size=$(du -m "$ARCHIVE" | cut -f1)
printf '\n%s (%s MiB docker-archive), %s runs after %s warm-up, median seconds\n' \
  "$ref" "$size" "$runs" "$warmup"
printf '%-7s %-5s %9s %9s\n' tool op median stddev
sort -t$'\t' -k2,2 -k3,3n "$RESULTS" | while IFS=$'\t' read -r t o med _mean sd _n; do
  printf '%-7s %-5s %9.3f %9.3f\n' "$t" "$o" "$med" "$sd"
done
echo
for op in load save; do
  s=$(awk -F'\t' -v o="$op" '$1 == "strata" && $2 == o { print $3 }' "$RESULTS")
  best=$(awk -F'\t' -v o="$op" '$1 != "strata" && $2 == o { print $3 "\t" $1 }' "$RESULTS" | sort -n | head -n1)
  if [ -z "$best" ]; then
    echo "$op: no peer result"
  elif [ -z "$s" ]; then
    printf '%s: fastest peer %s %.3f s; no strata result\n' "$op" "${best#*$'\t'}" "${best%%$'\t'*}"
  else
    awk -v o="$op" -v s="$s" -v b="${best%%$'\t'*}" -v p="${best#*$'\t'}" 'BEGIN {
      printf "%s: fastest peer %s %.3f s / strata %.3f s = %.2fx (above 1: strata is faster)\n", o, p, b, s, b / s }'
  fi
done

if [ -n "$json" ]; then
  jq -R -s --arg image "$ref" --argjson runs "$runs" '{image: $image, runs: $runs, results:
      [split("\n")[] | select(length > 0) | split("\t") |
       {tool: .[0], op: .[1], median: (.[2] | tonumber), mean: (.[3] | tonumber),
        stddev: (.[4] | tonumber), runs: (.[5] | tonumber)}]}' "$RESULTS" >"$json"
  log "results written to $json"
fi
