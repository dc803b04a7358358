#!/usr/bin/env bash
# Build the base images Strata's tests and benchmarks use, without the
# internet (only Debian's package mirror), and cache them between runs.
#
#   scripts/fixtures.sh              build what is missing, print KEY=PATH lines
#   scripts/fixtures.sh --print-dir  build what is missing, print only the dir
#   scripts/fixtures.sh --rebuild    throw the cache away first
#
# Cache: ${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}. It is rebuilt when
# FIXTURES_VERSION below changes; bump it whenever an output changes shape.
# The KEY=PATH lines are also written to fixtures.env in that dir, so tests
# can read them without running this script. Needs root (debootstrap, chroot
# ownership) and the tools from scripts/install-deps.sh.
set -euo pipefail

FIXTURES_VERSION=2
# All timestamps in the images (files, config, history): reproducible builds.
SOURCE_DATE_EPOCH=1747699200 # 2025-05-20T00:00:00Z
CREATED=2025-05-20T00:00:00Z
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BIG_LAYERS=4        # random-data layers on top of the Debian rootfs
BIG_FILES=5         # files per random layer
BIG_FILE_MIB=11     # 4 x 5 x 11 MiB = 220 MiB of incompressible data

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
DIR=${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}

# fd 4 is the caller's stderr; fd 2 goes to a step's log while it runs.
exec 4>&2
log() { printf 'fixtures: %s\n' "$*" >&4; }
die() { printf 'fixtures: error: %s\n' "$*" >&4; exit 1; }

print_dir=0 rebuild=0
for arg in "$@"; do
  case $arg in
    --print-dir) print_dir=1 ;;
    --rebuild) rebuild=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and root-owned rootfs files)"
for tool in umoci skopeo debootstrap podman dpkg apt-get openssl flock chroot; do
  command -v "$tool" >/dev/null || die "'$tool' not found: run scripts/install-deps.sh"
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
WORK=$DIR/.work
LOGS=$DIR/logs

# name -> path, in the order they are printed.
ARTEFACTS=(
  BUSYBOX_ROOTFS_TAR=busybox/rootfs.tar
  BUSYBOX_OCI=busybox.oci
  BUSYBOX_DOCKER_TAR=busybox.docker.tar
  BUSYBOX_OCI_TAR=busybox.oci.tar
  DEBIAN_OCI=debian.oci
  DEBIAN_DOCKER_TAR=debian.docker.tar
  DEBIAN_OCI_TAR=debian.oci.tar
  BIG_OCI=big.oci
  BIG_DOCKER_TAR=big.docker.tar
  PODMAN_DOCKER_TAR=podman.docker.tar
  PODMAN_OCI_TAR=podman.oci.tar
  DOCKER_SAVE_TAR=docker.docker.tar
)

# One builder at a time; the others wait here and then find everything built.
exec 9>"$DIR/.lock"
if ! flock -n 9; then
  log "another process is building fixtures in $DIR; waiting for it"
  flock -w 3600 9 || die "timed out after 1 h waiting for the lock $DIR/.lock"
fi

# Unmount what debootstrap or podman may have left mounted under .work.
cleanup_work() {
  local m
  if [ -d "$WORK" ]; then
    while read -r m; do umount -l "$m" 2>/dev/null || true; done \
      < <(awk -v d="$WORK/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    rm -rf "$WORK"
  fi
}

STEP=""
on_exit() {
  local rc=$?
  exec 2>&4
  if [ $rc -ne 0 ] && [ -n "$STEP" ]; then
    printf 'fixtures: error: step "%s" failed (exit %d); its log: %s\n' \
      "$STEP" "$rc" "$LOGS/$STEP.log" >&2
    tail -n 15 "$LOGS/$STEP.log" 2>/dev/null | sed 's/^/    /' >&2
  fi
  cleanup_work
}
trap on_exit EXIT

stamp=$(cat "$DIR/.stamp" 2>/dev/null || true)
if [ $rebuild -eq 1 ] || [ "$stamp" != "$FIXTURES_VERSION" ]; then
  [ -z "$stamp" ] || log "cache version ${stamp} != ${FIXTURES_VERSION} (or --rebuild): rebuilding"
  for kv in "${ARTEFACTS[@]}"; do rm -rf "${DIR:?}/${kv#*=}"; done
  rm -rf "$DIR/busybox" "$DIR/debian" "$DIR/debs" "$LOGS" "$DIR/fixtures.env"
  echo "$FIXTURES_VERSION" >"$DIR/.stamp"
fi
cleanup_work
mkdir -p "$WORK" "$LOGS"

# step NAME OUTPUT...: true when some OUTPUT is missing, so the caller builds.
# Its commands' output goes to logs/NAME.log, shown when the step fails.
step() {
  local name=$1 out; shift
  for out in "$@"; do
    if [ ! -e "$DIR/$out" ]; then
      STEP=$name
      log "building $name"
      exec 2>"$LOGS/$name.log"
      return 0
    fi
  done
  return 1
}
done_step() { exec 2>&4; STEP=""; }
run() { "$@" >&2; } # the step's commands write to its log

# Files owned by root:root with one fixed mtime, as a deterministic build would.
normalise_tree() {
  chown -hR 0:0 "$1"
  find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# make_oci LAYOUT ROOTFS HISTORY CMD: a one-layer image tagged `latest` whose
# layer is ROOTFS, via unpack/repack so entries are relative ("bin/sh").
make_oci() {
  local layout=$1 rootfs=$2 history=$3 cmd=$4 bundle
  bundle=$WORK/bundle.$$
  run umoci init --layout "$layout"
  run umoci new --image "$layout:latest"
  run umoci unpack --image "$layout:latest" "$bundle"
  cp -a "$rootfs/." "$bundle/rootfs/"
  normalise_tree "$bundle/rootfs"
  run umoci repack --image "$layout:latest" --history.created "$CREATED" \
    --history.created_by "$history" "$bundle"
  rm -rf "$bundle"
  run umoci config --image "$layout:latest" --created "$CREATED" --author strata-fixtures \
    --config.cmd "$cmd" --config.env "PATH=$IMAGE_PATH" \
    --history.created "$CREATED" --history.created_by "/bin/sh -c #(nop) CMD [\"$cmd\"]"
  run umoci gc --layout "$layout"
  chmod -R a+rX "$layout" # umoci writes blobs 0600
}

# archives NAME REF: NAME.docker.tar (tagged REF) and NAME.oci.tar from NAME.oci.
archives() {
  local name=$1 ref=$2
  rm -f "$WORK/$name.docker.tar" "$WORK/$name.oci.tar"
  run skopeo copy --quiet "oci:$DIR/$name.oci:latest" "docker-archive:$WORK/$name.docker.tar:$ref"
  run skopeo copy --quiet "oci:$DIR/$name.oci:latest" "oci-archive:$WORK/$name.oci.tar:latest"
  chmod a+r "$WORK/$name.docker.tar" "$WORK/$name.oci.tar"
  mv "$WORK/$name.docker.tar" "$WORK/$name.oci.tar" "$DIR/"
}

# The first bookworm mirror configured for apt (deb822 or one-line format).
debian_mirror() {
  local m
  m=$(awk '
      /^[[:space:]]*$/ { if (uri != "" && suite) { print uri; exit } uri = ""; suite = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
      END { if (uri != "" && suite) print uri }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  if [ -z "$m" ]; then
    m=$(awk '$1 == "deb" { sub(/\[[^]]*\] */, ""); if ($3 == "bookworm") { print $2; exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
  fi
  echo "${STRATA_DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

# --- busybox ------------------------------------------------------------------

if step busybox-rootfs busybox/rootfs.tar; then
  mkdir -p "$DIR/debs"
  if ! ls "$DIR"/debs/busybox-static_*.deb >/dev/null 2>&1; then
    # apt-get download needs package lists; update once if they are missing.
    if ! apt-cache show busybox-static >/dev/null 2>&1; then run apt-get update -qq; fi
    # Download as root into a dir _apt can't read: apt warns; that's fine.
    (cd "$WORK" && run apt-get download -q busybox-static)
    mv "$WORK"/busybox-static_*.deb "$DIR/debs/"
  fi
  R=$WORK/busybox-rootfs
  debs=("$DIR"/debs/busybox-static_*.deb)
  run dpkg -x "${debs[0]}" "$R"
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var/tmp,home}
  # One symlink per applet, where busybox would put it. --list-full runs the
  # static binary on the host, so no chroot or /proc/self/exe is needed.
  while read -r applet; do
    [ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
  done < <("$R/bin/busybox" --list-full)
  [ -L "$R/bin/sh" ] || die "busybox has no sh applet?"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$R/etc/group"
  normalise_tree "$R"
  chmod 1777 "$R/tmp" "$R/var/tmp"
  chmod 700 "$R/root"
  mkdir -p "$DIR/busybox"
  run tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" \
    --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$R" -cf "$WORK/rootfs.tar" .
  mv "$WORK/rootfs.tar" "$DIR/busybox/rootfs.tar"
  rm -rf "$R"
  done_step
fi

if step busybox-oci busybox.oci; then
  R=$WORK/busybox-rootfs
  mkdir -p "$R"
  run tar -C "$R" -xpf "$DIR/busybox/rootfs.tar"
  make_oci "$WORK/busybox.oci" "$R" \
    "/bin/sh -c #(nop) ADD busybox-static (Debian) rootfs with applet symlinks" sh
  rm -rf "$R"
  mv "$WORK/busybox.oci" "$DIR/busybox.oci"
  done_step
fi

if step busybox-archives busybox.docker.tar busybox.oci.tar; then
  archives busybox busybox:latest
  done_step
fi

# --- debian (debootstrap minbase) ---------------------------------------------

if step debian-oci debian.oci; then
  R=$WORK/debian-rootfs
  mirror=$(debian_mirror)
  log "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
  run debootstrap --variant=minbase bookworm "$R" "$mirror"
  # Not part of an image: host-specific files, package caches, device nodes.
  rm -rf "${R:?}"/var/cache/apt/archives/*.deb "${R:?}"/var/cache/apt/*.bin \
    "${R:?}"/var/lib/apt/lists/* "${R:?}"/dev/* "${R:?}"/tmp/* "${R:?}"/debootstrap
  find "$R/var/log" -type f -delete
  mkdir -p "$R/var/lib/apt/lists/partial"
  : >"$R/etc/resolv.conf"
  echo localhost >"$R/etc/hostname"
  make_oci "$WORK/debian.oci" "$R" \
    "/bin/sh -c #(nop) ADD debootstrap --variant=minbase bookworm rootfs" bash
  rm -rf "$R"
  mv "$WORK/debian.oci" "$DIR/debian.oci"
  done_step
fi

if step debian-archives debian.docker.tar debian.oci.tar; then
  archives debian debian:bookworm
  done_step
fi

# --- big: debian + layers of incompressible data ------------------------------

if step big-oci big.oci; then
  cp -a "$DIR/debian.oci" "$WORK/big.oci"
  for ((i = 1; i <= BIG_LAYERS; i++)); do
    S=$WORK/big-layer/data
    mkdir -p "$S/layer$i"
    for ((j = 1; j <= BIG_FILES; j++)); do
      # AES-CTR keystream from a fixed password: random-looking (gzip can't
      # shrink it) and identical on every machine.
      openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:strata-big-$i-$j" \
        -in /dev/zero 2>/dev/null | head -c $((BIG_FILE_MIB * 1024 * 1024)) >"$S/layer$i/blob$j" || true
      [ "$(stat -c %s "$S/layer$i/blob$j")" -eq $((BIG_FILE_MIB * 1024 * 1024)) ] \
        || die "openssl produced a short file for layer $i blob $j"
    done
    normalise_tree "$S"
    # Inserting dir `data` at /data gives entries data/, data/layerN/, ...
    run umoci insert --image "$WORK/big.oci:latest" --history.created "$CREATED" \
      --history.created_by "/bin/sh -c #(nop) COPY data/layer$i /data/layer$i" "$S" /data
    rm -rf "$WORK/big-layer"
  done
  run umoci gc --layout "$WORK/big.oci"
  chmod -R a+rX "$WORK/big.oci"
  mv "$WORK/big.oci" "$DIR/big.oci"
  done_step
fi

if step big-archive big.docker.tar; then
  rm -f "$WORK/big.docker.tar"
  run skopeo copy --quiet "oci:$DIR/big.oci:latest" "docker-archive:$WORK/big.docker.tar:big:latest"
  chmod a+r "$WORK/big.docker.tar"
  mv "$WORK/big.docker.tar" "$DIR/big.docker.tar"
  done_step
fi

# --- podman's own writer ------------------------------------------------------

if step podman-archives podman.docker.tar podman.oci.tar; then
  P=$WORK/podman
  # Private storage and config: never the system's podman store.
  eval "$("$SCRIPTS/peers.sh" podman-env "$P")"
  run podman load -q -i "$DIR/busybox.docker.tar"
  run podman save -q --format docker-archive -o "$WORK/podman.docker.tar" busybox:latest
  run podman save -q --format oci-archive -o "$WORK/podman.oci.tar" busybox:latest
  "$SCRIPTS/peers.sh" podman-reset "$P"
  unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF BUILDAH_TMPDIR
  chmod a+r "$WORK/podman.docker.tar" "$WORK/podman.oci.tar"
  mv "$WORK/podman.docker.tar" "$WORK/podman.oci.tar" "$DIR/"
  done_step
fi

# --- docker's own writer (docker save from dockerd 20.10) ---------------------

if step docker-archive docker.docker.tar; then
  # A short dir: dockerd's sockets must fit in 108 bytes.
  D=$(mktemp -d /tmp/strata-fx-dockerd.XXXXXX)
  stop_dockerd() { "$SCRIPTS/peers.sh" dockerd stop "$D" || true; rm -rf "$D"; }
  trap 'stop_dockerd; on_exit' EXIT
  eval "$("$SCRIPTS/peers.sh" dockerd start "$D")"
  export DOCKER_HOST
  run /usr/bin/docker load -q -i "$DIR/busybox.docker.tar"
  run /usr/bin/docker save -o "$WORK/docker.docker.tar" busybox:latest
  unset DOCKER_HOST
  stop_dockerd
  trap on_exit EXIT
  chmod a+r "$WORK/docker.docker.tar"
  mv "$WORK/docker.docker.tar" "$DIR/"
  done_step
fi

# --- report -------------------------------------------------------------------

{
  echo "STRATA_FIXTURES=$DIR"
  for kv in "${ARTEFACTS[@]}"; do
    [ -e "$DIR/${kv#*=}" ] || die "internal: ${kv#*=} missing after build"
    echo "${kv%%=*}=$DIR/${kv#*=}"
  done
} >"$DIR/fixtures.env.tmp"
mv "$DIR/fixtures.env.tmp" "$DIR/fixtures.env"

if [ $print_dir -eq 1 ]; then echo "$DIR"; else cat "$DIR/fixtures.env"; fi
