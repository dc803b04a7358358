#!/usr/bin/env bash
# Install the system tools Strata's tests and benchmarks need (Debian 12).
# Idempotent and fast when everything is present: apt is only touched for
# what is missing, and `apt-get update` runs at most once per call.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || SUDO=sudo
SUDO=${SUDO:-}

# package -> a file it installs; checking files is much faster than dpkg-query.
declare -A PKG_FILE=(
  [skopeo]=/usr/bin/skopeo
  [umoci]=/usr/bin/umoci
  [oci-image-tool]=/usr/bin/oci-image-tool
  [podman]=/usr/bin/podman
  [buildah]=/usr/bin/buildah
  [crun]=/usr/bin/crun
  [runc]=/usr/sbin/runc
  [docker-registry]=/usr/bin/docker-registry
  [debootstrap]=/usr/sbin/debootstrap
  [docker.io]=/usr/sbin/dockerd
  [tmux]=/usr/bin/tmux
  [hyperfine]=/usr/bin/hyperfine
  [jq]=/usr/bin/jq
  # podman load/run as root here uses overlay via the kernel; these cover the
  # rootless case and are tiny, so keep them rather than guess per machine.
  [uidmap]=/usr/bin/newuidmap
  [fuse-overlayfs]=/usr/bin/fuse-overlayfs
  # fixtures.sh: dpkg -x, openssl for deterministic random layers, python3.
  [openssl]=/usr/bin/openssl
  [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
  [gzip]=/bin/gzip
  [util-linux]=/usr/bin/flock
  [shellcheck]=/usr/bin/shellcheck
  # htpasswd -B for the registry's auth tests (scripts/peers.sh htpasswd).
  [apache2-utils]=/usr/bin/htpasswd
  [curl]=/usr/bin/curl
)

missing=()
for pkg in "${!PKG_FILE[@]}"; do
  [ -e "${PKG_FILE[$pkg]}" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
  log "installing: ${missing[*]}"
  # Keep packages such as docker.io and docker-registry from starting system
  # services (and grabbing :5000 or creating a bridge): policy-rc.d exit 101
  # tells invoke-rc.d "not allowed". Restore whatever was there before.
  prc=/usr/sbin/policy-rc.d
  backup=""
  if [ -e "$prc" ]; then
    backup=$(mktemp)
    $SUDO cp -p "$prc" "$backup"
  fi
  restore_prc() {
    if [ -n "$backup" ]; then $SUDO cp -p "$backup" "$prc"; rm -f "$backup"
    else $SUDO rm -f "$prc"; fi
  }
  trap restore_prc EXIT
  printf '#!/bin/sh\n# written by strata scripts/install-deps.sh during install\nexit 101\n' \
    | $SUDO tee "$prc" >/dev/null
  $SUDO chmod 755 "$prc"

  # Other engineers may run apt at the same time: wait for the dpkg lock.
  apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
  $SUDO apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_opts[@]}" install -y -qq \
    --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install failed for: ${missing[*]}"

  # If a service started anyway (no policy-rc.d support, systemd running),
  # stop and disable it: tests run their own private instances.
  for svc in docker docker.socket containerd docker-registry; do
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
      $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif command -v service >/dev/null; then
      $SUDO service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
  for pkg in "${missing[@]}"; do
    [ -e "${PKG_FILE[$pkg]}" ] || die "package $pkg installed but ${PKG_FILE[$pkg]} is missing"
  done
fi

# cargo-nextest: the test runner scripts/test.sh uses.
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  command -v cargo >/dev/null || die "cargo not found (install Rust with rustup first)"
  log "installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked || die "cargo install cargo-nextest failed"
fi
