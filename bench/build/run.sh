#!/usr/bin/env bash
# Build benchmark: Strata vs BuildKit (dockerd) vs buildah, same machine, same run.
#
#   bench/build/run.sh [-n REPS] [--tools strata,buildkit,buildah] [--strata BIN] [--keep]
#                      [--fs loop|here]
#
# Scenarios (see README.md): a = multi-stage with RUN steps and a 100 MB file,
# b = 20,000 small files + 200 MB of larger ones, c = rebuild of b after a one-file change,
# d = two independent stages (sleep 2 + work) and a final stage copying from both,
# e = no-op rebuild of a, b and d, f = 20 `RUN true` steps (and the same file without them:
# the per-RUN overhead). Each build is timed REPS times; the median is reported,
# next to the time the same RUN commands take directly on the host (busybox's applets, from
# the fixture). The host RUNs are timed again right before each tool's turn, and a tool's
# overhead is the median over repetitions of (its build time - those host RUN times): on
# a machine whose speed drifts, the pair sees the same conditions.
#
# Everything lives in one scratch dir under /tmp; dockerd and buildah's storage are private
# to it (scripts/peers.sh) and stopped by PID / unmounted on exit. With --fs loop (the
# default as root) that dir is a fresh journaled ext4 on a loop device: on an ext4 without
# a journal, file creation slows down 5-10x for ~30 s after many deletions (the kernel's
# recently_deleted inode scan), which would charge whichever tool runs after another's
# cleanup; --fs here uses /tmp as it is. Tools take turns going first, one rep each, and
# every timed build starts after a `sync`.
set -euo pipefail

REPS=3
TOOLS=strata,buildkit,buildah
STRATA_BIN=${STRATA:-}
KEEP=0
FS=auto
while [ $# -gt 0 ]; do
  case $1 in
    -n) REPS=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --strata) STRATA_BIN=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --fs) FS=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -n needs a positive number, got '$REPS'" >&2; exit 2; }
case $FS in auto | loop | here) ;; *) echo "run.sh: --fs is loop or here, got '$FS'" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS=$ROOT/scripts/peers.sh
FIX=${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}
BUSYBOX_TAR=$FIX/busybox.docker.tar
BUSYBOX_ROOTFS=$FIX/busybox/rootfs.tar
for f in "$BUSYBOX_TAR" "$BUSYBOX_ROOTFS"; do
  [ -e "$f" ] || { echo "run.sh: fixture $f is missing: run scripts/fixtures.sh" >&2; exit 1; }
done

if [ -z "$STRATA_BIN" ]; then
  for c in "${CARGO_TARGET_DIR:-$ROOT/target}/release/strata" "$(command -v strata || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then STRATA_BIN=$c; break; fi
  done
fi
[ -n "$STRATA_BIN" ] && [ -x "$STRATA_BIN" ] ||
  { echo "run.sh: no strata binary: cargo build --release -p strata-cli, or pass --strata BIN" >&2; exit 1; }

has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
if has_tool buildkit && ! [ -x /usr/sbin/dockerd ]; then
  echo "run.sh: SKIPPED buildkit: /usr/sbin/dockerd is not installed" >&2; TOOLS=${TOOLS//buildkit/}
fi
if has_tool buildah && ! command -v buildah >/dev/null; then
  echo "run.sh: SKIPPED buildah: not installed" >&2; TOOLS=${TOOLS//buildah/}
fi

# Short path: dockerd's unix sockets live under it (108-byte limit).
W=$(mktemp -d /tmp/sbench.XXXXXX)
DOCKERD_UP=0
LOOP_IMG= LOOP_DEV=
cleanup() {
  set +e
  [ "$DOCKERD_UP" = 1 ] && bash "$PEERS" dockerd stop "$W" >/dev/null 2>&1
  has_tool buildah && bash "$PEERS" podman-reset "$W" >/dev/null 2>&1
  if [ "$KEEP" = 1 ]; then
    echo "kept $W${LOOP_DEV:+ (mounted from $LOOP_DEV: umount $W; losetup -d $LOOP_DEV; rm $LOOP_IMG)}" >&2
  elif [ -n "$LOOP_IMG" ]; then
    umount "$W" 2>/dev/null || umount -l "$W"
    [ -n "$LOOP_DEV" ] && losetup -d "$LOOP_DEV"
    rm -f "$LOOP_IMG"; rmdir "$W"
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

if [ "$FS" != here ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
  # Inode tables and journal written now, so no lazy-init thread writes during the runs;
  # the file allocated up front and the loop in direct-I/O mode, so an fsync costs what it
  # costs on the disk itself (a buffered loop made a 220 MB fsync 3x slower).
  LOOP_IMG=$W.img
  fallocate -l 32G "$LOOP_IMG"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP_IMG"
  LOOP_DEV=$(losetup --direct-io=on -f --show "$LOOP_IMG")
  mount "$LOOP_DEV" "$W"
  log "scratch: journaled ext4 on $LOOP_DEV (direct I/O) at $W"
elif [ "$FS" = loop ]; then
  echo "run.sh: --fs loop needs root and mkfs.ext4" >&2; exit 1
else
  log "scratch: $W on the host's filesystem as it is"
fi

# --- the busybox applets on the host, for timing the RUN commands directly ----------------
mkdir -p "$W/bb"
tar -xf "$BUSYBOX_ROOTFS" -C "$W/bb" ./bin/busybox
mkdir -p "$W/bb/applets"
"$W/bb/bin/busybox" --install -s "$W/bb/applets"

# --- scenario contexts (deterministic content) -------------------------------------------
# RUN commands refer to their paths through ${R}: empty in the builds (ARG R=), a scratch
# root when timed on the host.
A1='sha256sum ${R}/src/big.bin > ${R}/src/big.sha256 && gzip -1 -c ${R}/src/big.bin | wc -c > ${R}/src/big.gzsize'
A2='mkdir -p ${R}/src/gen && i=0; while [ $i -lt 2000 ]; do echo $i > ${R}/src/gen/f$i; i=$((i+1)); done'
A3='cat ${R}/app/big.sha256 > ${R}/summary && du -s ${R}/app >> ${R}/summary'
B1='find ${R}/ctx -type f | wc -l > ${R}/count && du -s ${R}/ctx > ${R}/du'
D1='sleep 2 && seq 1 400000 | sha256sum > ${R}/one.txt'
D2='sleep 2 && seq 1 400000 | md5sum > ${R}/two.txt'

log "generating contexts in $W/ctx"
mkdir -p "$W/ctx/a" "$W/ctx/b" "$W/ctx/d" "$W/ctx/f" "$W/ctx/f0"
python3 - "$W/ctx" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(20240601)
with open(os.path.join(root, "a", "big.bin"), "wb") as f:
    for _ in range(100):
        f.write(rng.randbytes(1 << 20))
files = os.path.join(root, "b", "files")
for d in range(200):
    os.makedirs(os.path.join(files, f"d{d:03}"))
    for i in range(100):
        n = d * 100 + i
        with open(os.path.join(files, f"d{d:03}", f"f{n:05}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randint(64, 4096)))
large = os.path.join(root, "b", "large")
os.makedirs(large)
for i in range(20):
    with open(os.path.join(large, f"blob{i:02}.bin"), "wb") as f:
        for _ in range(10):
            f.write(rng.randbytes(1 << 20))
EOF
cat >"$W/ctx/a/Dockerfile" <<EOF
FROM busybox AS build
ARG R=
COPY big.bin /src/big.bin
RUN $A1
RUN $A2
FROM busybox
ARG R=
COPY --from=build /src/ /app/
RUN $A3
EOF
cat >"$W/ctx/b/Dockerfile" <<EOF
FROM busybox
ARG R=
COPY . /ctx/
RUN $B1
EOF
cat >"$W/ctx/d/Dockerfile" <<EOF
FROM busybox AS one
ARG R=
RUN $D1
FROM busybox AS two
ARG R=
RUN $D2
FROM busybox
COPY --from=one /one.txt /
COPY --from=two /two.txt /
EOF
{ echo "FROM busybox"; for i in $(seq 1 20); do echo "RUN true $i"; done; } >"$W/ctx/f/Dockerfile"
printf 'FROM busybox\nLABEL runs=none\n' >"$W/ctx/f0/Dockerfile"
CHANGED=$W/ctx/b/files/d123/f12345.txt

# --- host RUN times ----------------------------------------------------------------------
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
RESULTS=$W/results.tsv
: >"$RESULTS"

host_run() { # host_run ROOT CMD...: time the commands with busybox's applets, in order
  local r=$1 t0 t1; shift
  sync
  t0=$(now)
  for c in "$@"; do R=$r PATH=$W/bb/applets "$W/bb/bin/busybox" sh -ec "$c"; done
  t1=$(now)
  elapsed "$t0" "$t1"
}
host_times() { # host_times REP TOOL: the host RUN times measured before TOOL's turn
  local rep=$1 tool=$2 h=$W/host/$1 ta tb td
  rm -rf "$h"; mkdir -p "$h/a/src" "$h/b" "$h/d"
  cp "$W/ctx/a/big.bin" "$h/a/src/"
  ta=$(host_run "$h/a" "$A1" "$A2")
  cp -a "$h/a/src" "$h/a/app" # COPY --from: not a RUN, not timed
  ta=$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$ta" "$(host_run "$h/a" "$A3")")
  cp -a "$W/ctx/b" "$h/b/ctx"
  tb=$(host_run "$h/b" "$B1")
  td=$(host_run "$h/d" "$D1" "$D2")
  local who=host:$tool s
  printf '%s\t%s\t%s\t%s\n' "$who" a "$rep" "$ta" "$who" b "$rep" "$tb" "$who" c "$rep" "$tb" \
    "$who" d "$rep" "$td" >>"$RESULTS"
  for s in ea eb ed f0; do printf '%s\t%s\t%s\t0\n' "$who" "$s" "$rep" >>"$RESULTS"; done
  local fcmds=() i
  for i in $(seq 1 20); do fcmds+=("true $i"); done
  printf '%s\tf\t%s\t%s\n' "$who" "$rep" "$(host_run "$h" "${fcmds[@]}")" >>"$RESULTS"
  rm -rf "$h"
}

# --- the tools ---------------------------------------------------------------------------
setup_tools() {
  if has_tool strata; then
    export STRATA_ROOT=$W/strata-root
    "$STRATA_BIN" load -i "$BUSYBOX_TAR" >/dev/null
    log "strata: $STRATA_BIN ($("$STRATA_BIN" --version 2>/dev/null || echo '?'))"
  fi
  if has_tool buildkit; then
    eval "$(bash "$PEERS" dockerd start "$W")"
    DOCKERD_UP=1
    export DOCKER_HOST DOCKER_BUILDKIT=1
    /usr/bin/docker load -i "$BUSYBOX_TAR" >/dev/null
    log "buildkit: dockerd $(/usr/bin/docker version --format '{{.Server.Version}}')"
  fi
  if has_tool buildah; then
    eval "$(bash "$PEERS" podman-env "$W")"
    buildah pull -q "docker-archive:$BUSYBOX_TAR" >/dev/null
    log "buildah: $(buildah --version)"
  fi
}

# build TOOL SCENARIO CTX NOCACHE: sets LAST to the seconds it took; exits loudly with the
# log on failure (no subshell, so the exit ends the script and the trap cleans up).
LAST=
BUILD_NO=0
build() {
  BUILD_NO=$((BUILD_NO + 1))
  local tool=$1 s=$2 ctx=$3 nocache=$4 t0 t1 flag=()
  local logf=$W/logs/$(printf %03d "$BUILD_NO")-$tool-$s-$([ "$nocache" = 1 ] && echo cold || echo warm).log
  mkdir -p "$W/logs"
  [ "$nocache" = 1 ] && flag=(--no-cache)
  # Every build starts with nothing dirty in the page cache: a journal commit (any fsync)
  # would otherwise write back what the builds before it left, whoever wrote it.
  sync
  t0=$(now)
  case $tool in
    strata) timeout 1800 "$STRATA_BIN" build --progress plain "${flag[@]}" -t "bench-$s" "$ctx" ;;
    buildkit) timeout 1800 /usr/bin/docker build --network=host --progress=plain "${flag[@]}" -t "bench-$s" "$ctx" ;;
    buildah) timeout 1800 buildah bud --layers --network=host "${flag[@]}" -t "bench-$s" "$ctx" ;;
  esac >"$logf" 2>&1 || { log "$tool build of scenario $s failed; log $logf:"; tail -20 "$logf" >&2; exit 1; }
  t1=$(now)
  LAST=$(elapsed "$t0" "$t1")
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

setup_tools
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
for ((rep = 1; rep <= REPS; rep++)); do
  # Tools interleave within a repetition so machine noise spreads over all of them, and
  # take turns going first.
  n=${#TOOL_LIST[@]}
  for ((k = 0; k < n; k++)); do
    tool=${TOOL_LIST[$(((k + rep - 1) % n))]}
    [ -n "$tool" ] || continue
    log "repetition $rep/$REPS: host RUN times, then $tool"
    host_times "$rep" "$tool"
    # Cold builds use --no-cache (the base image stays loaded); the no-op rebuild follows.
    build "$tool" a "$W/ctx/a" 1; record "$tool" a "$rep" "$LAST"
    build "$tool" a "$W/ctx/a" 0; record "$tool" ea "$rep" "$LAST"
    build "$tool" b "$W/ctx/b" 1; record "$tool" b "$rep" "$LAST"
    build "$tool" b "$W/ctx/b" 0; record "$tool" eb "$rep" "$LAST"
    cp "$CHANGED" "$W/changed.orig"
    echo "changed in repetition $rep" >>"$CHANGED"
    build "$tool" b "$W/ctx/b" 0; record "$tool" c "$rep" "$LAST"
    cp "$W/changed.orig" "$CHANGED"
    build "$tool" d "$W/ctx/d" 1; record "$tool" d "$rep" "$LAST"
    build "$tool" d "$W/ctx/d" 0; record "$tool" ed "$rep" "$LAST"
    build "$tool" f0 "$W/ctx/f0" 1; record "$tool" f0 "$rep" "$LAST"
    build "$tool" f "$W/ctx/f" 1; record "$tool" f "$rep" "$LAST"
  done
done

# --- the table ---------------------------------------------------------------------------
python3 - "$RESULTS" "$REPS" "$TOOLS" <<'EOF'
import statistics, sys
from collections import defaultdict
path, reps, tools = sys.argv[1], sys.argv[2], [t for t in sys.argv[3].split(",") if t]
# (who, scenario) -> {repetition: seconds}; who is a tool or "host:<tool>", the host RUN
# times measured right before that tool's turn.
runs = defaultdict(dict)
for line in open(path):
    who, s, rep, secs = line.rstrip("\n").split("\t")
    runs[(who, s)][int(rep)] = float(secs)
def median(xs):
    return statistics.median(xs) if xs else None
med = {k: median(list(v.values())) for k, v in runs.items()}
names = {
    "a": "a. multi-stage, RUN steps, 100 MB file (cold)",
    "b": "b. 20,000 small files + 200 MB (cold)",
    "c": "c. rebuild of b after a one-file change",
    "d": "d. two independent stages (sleep 2 each) + final",
    "ea": "e. no-op rebuild of a",
    "eb": "e. no-op rebuild of b",
    "ed": "e. no-op rebuild of d",
    "f0": "f0. FROM + LABEL only (cold)",
    "f": "f. 20 x RUN true (cold)",
}
def overhead(t, s):
    """Median over repetitions of the build time minus the host RUN time measured before it."""
    build, host = runs.get((t, s), {}), runs.get((f"host:{t}", s), {})
    return median([build[r] - host[r] for r in build if r in host])
def f(x):
    return "-" if x is None else f"{x:.2f}"
def ratio(x, y):
    return "-" if x is None or y is None or y <= 0 else f"{x / y:.2f}"
cols = ["scenario", "RUN on host (s)"]
cols += [f"{t} (s)" for t in tools] + [f"{t} overhead (s)" for t in tools]
others = [t for t in ("buildkit", "buildah") if t in tools and "strata" in tools]
cols += [f"strata/{o} time" for o in others] + [f"strata/{o} overhead" for o in others]
print(f"Median of {reps} repetitions, seconds. RUN on host: median of every host timing. "
      "Overhead: median over repetitions of (build time - the host RUN time measured just "
      "before that tool's turn).\n")
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for s, name in names.items():
    host_all = [x for t in tools for x in runs.get((f"host:{t}", s), {}).values()]
    row = [name, f(median(host_all))]
    row += [f(med.get((t, s))) for t in tools]
    over = {t: overhead(t, s) for t in tools}
    row += [f(over[t]) for t in tools]
    row += [ratio(med.get(("strata", s)), med.get((o, s))) for o in others]
    row += [ratio(over.get("strata"), over.get(o)) for o in others]
    print("| " + " | ".join(row) + " |")
print("\nPer-RUN overhead, (f - f0) / 20 RUN steps, ms:", ", ".join(
    f"{t} {(med[(t, 'f')] - med[(t, 'f0')]) / 20 * 1000:.1f}"
    for t in tools if (t, "f") in med and (t, "f0") in med))
print("\nEvery repetition, seconds (repetition 1 is the first build in fresh stores; "
      "\"host before T\" is the host RUN timing just before T's turn):\n")
whos = [w for t in tools for w in (f"host:{t}", t)]
print("| scenario | " + " | ".join(w.replace("host:", "host before ") for w in whos) + " |")
print("|---|" + "---|" * len(whos))
for s, name in names.items():
    cells = [", ".join(f"{x:.2f}" for _, x in sorted(runs.get((w, s), {}).items())) or "-"
             for w in whos]
    print(f"| {name} | " + " | ".join(cells) + " |")
EOF
