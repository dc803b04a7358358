#!/usr/bin/env bash
# Start and stop the peer tools (docker-registry, dockerd, podman/buildah)
# privately, each inside a scratch dir the caller owns, so tests never touch
# the system's services, ports or storage. See shared/peers.md for why each
# flag is there.
#
#   scripts/peers.sh registry start DIR [PORT] [--htpasswd FILE]
#   scripts/peers.sh registry stop DIR
#   scripts/peers.sh htpasswd FILE USER PASSWORD     # bcrypt entry for the registry
#   scripts/peers.sh dockerd start DIR [extra dockerd flags...]
#   scripts/peers.sh dockerd stop DIR
#   scripts/peers.sh podman-env DIR                  # prints `export ...` lines
#
# `start` prints KEY=VALUE lines (PID file and endpoint) on stdout, so a
# caller can `eval "$(scripts/peers.sh registry start "$W")"`. Everything
# else (progress, errors) goes to stderr. Processes are stopped only by the
# PID recorded at start.
set -euo pipefail

log() { printf 'peers: %s\n' "$*" >&2; }
die() { printf 'peers: error: %s\n' "$*" >&2; exit 1; }

DOCKER=/usr/bin/docker # another docker client may come first on PATH

abspath() { mkdir -p "$1" && (cd "$1" && pwd -P); }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# stop_pid PIDFILE NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local pidfile=$1 name=$2 pid i
  if [ ! -s "$pidfile" ]; then log "$name: no PID file at $pidfile (not running?)"; return 0; fi
  pid=$(cat "$pidfile")
  if ! pid_alive "$pid"; then log "$name: PID $pid already gone"; rm -f "$pidfile"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    log "$name: PID $pid ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  log "$name: stopped (PID $pid)"
}

# --- registry (CNCF distribution 2.8) ---------------------------------------

registry_start() {
  local dir port="" htpasswd="" pid i
  [ $# -ge 1 ] || die "usage: registry start DIR [PORT] [--htpasswd FILE]"
  dir=$(abspath "$1"); shift
  while [ $# -gt 0 ]; do
    case $1 in
      --htpasswd) [ $# -ge 2 ] || die "--htpasswd needs a file"; htpasswd=$(realpath "$2"); shift 2 ;;
      [0-9]*) port=$1; shift ;;
      *) die "registry start: unknown argument '$1'" ;;
    esac
  done
  [ -x /usr/bin/docker-registry ] || die "docker-registry missing: run scripts/install-deps.sh"
  if [ -s "$dir/registry.pid" ] && pid_alive "$(cat "$dir/registry.pid")"; then
    die "a registry already runs from $dir (PID $(cat "$dir/registry.pid"))"
  fi
  [ -n "$port" ] || port=$(free_port)
  mkdir -p "$dir/registry"
  {
    echo "version: 0.1"
    echo "log: {level: info, accesslog: {disabled: true}}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir/registry}"
    echo "  delete: {enabled: true}"
    echo "  maintenance: {uploadpurging: {enabled: false}}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [ -n "$htpasswd" ]; then
      [ -r "$htpasswd" ] || die "htpasswd file $htpasswd is not readable"
      echo "auth: {htpasswd: {realm: strata-test, path: $htpasswd}}"
    fi
  } >"$dir/registry.yml"
  setsid /usr/bin/docker-registry serve "$dir/registry.yml" \
    </dev/null >"$dir/registry.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/registry.pid"
  # /v2/ answers 200 (open) or 401 (htpasswd) once the server listens.
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || die "registry exited at start; log: $dir/registry.log
$(tail -5 "$dir/registry.log")"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    case $code in 200 | 401) break ;; esac
    sleep 0.1
  done
  case $code in 200 | 401) ;; *)
    stop_pid "$dir/registry.pid" registry
    die "registry did not answer on 127.0.0.1:$port within 10 s; log: $dir/registry.log" ;;
  esac
  log "registry: PID $pid on 127.0.0.1:$port"
  echo "REGISTRY_PID_FILE=$dir/registry.pid"
  echo "REGISTRY_ADDR=127.0.0.1:$port"
  echo "REGISTRY_URL=http://127.0.0.1:$port"
}

registry_stop() {
  [ $# -eq 1 ] || die "usage: registry stop DIR"
  stop_pid "$(abspath "$1")/registry.pid" registry
}

# bcrypt is the only hash distribution's htpasswd accepts.
make_htpasswd() {
  [ $# -eq 3 ] || die "usage: htpasswd FILE USER PASSWORD"
  command -v htpasswd >/dev/null || die "htpasswd missing (package apache2-utils): run scripts/install-deps.sh"
  if [ -e "$1" ]; then htpasswd -Bb "$1" "$2" "$3" 2>/dev/null
  else htpasswd -Bbc "$1" "$2" "$3" 2>/dev/null; fi
  echo "HTPASSWD=$(realpath "$1")"
}

# --- dockerd 20.10 -----------------------------------------------------------

dockerd_start() {
  local dir pid i sock
  [ $# -ge 1 ] || die "usage: dockerd start DIR [extra dockerd flags...]"
  dir=$(abspath "$1"); shift
  [ -x /usr/sbin/dockerd ] || die "dockerd missing (package docker.io): run scripts/install-deps.sh"
  [ -x "$DOCKER" ] || die "$DOCKER missing (package docker.io): run scripts/install-deps.sh"
  sock=$dir/docker.sock
  # dockerd's containerd socket lives under the exec root; unix socket paths
  # are limited to 108 bytes.
  if [ $((${#dir} + 60)) -gt 108 ]; then
    die "dockerd: scratch dir path too long for unix sockets (${#dir} chars): $dir; use a shorter one, e.g. under /tmp"
  fi
  if [ -s "$dir/dockerd.pid" ] && pid_alive "$(cat "$dir/dockerd.pid")"; then
    die "a dockerd already runs from $dir (PID $(cat "$dir/dockerd.pid"))"
  fi
  mkdir -p "$dir/docker" "$dir/docker-exec"
  # No bridge, no iptables/NAT: nothing outside DIR changes on the host.
  # `docker build` then needs --network=host.
  setsid /usr/sbin/dockerd --data-root "$dir/docker" --exec-root "$dir/docker-exec" \
    --pidfile "$dir/docker-exec/dockerd.pid" -H "unix://$sock" --storage-driver overlay2 \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --userland-proxy=false "$@" </dev/null >"$dir/dockerd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/dockerd.pid"
  for ((i = 0; i < 600; i++)); do
    pid_alive "$pid" || die "dockerd exited at start; log: $dir/dockerd.log
$(tail -5 "$dir/dockerd.log")"
    if "$DOCKER" -H "unix://$sock" version >/dev/null 2>&1; then
      log "dockerd: PID $pid on unix://$sock"
      echo "DOCKERD_PID_FILE=$dir/dockerd.pid"
      echo "DOCKER_HOST=unix://$sock"
      return 0
    fi
    sleep 0.1
  done
  stop_pid "$dir/dockerd.pid" dockerd
  die "dockerd did not answer on unix://$sock within 60 s; log: $dir/dockerd.log"
}

dockerd_stop() {
  local dir
  [ $# -eq 1 ] || die "usage: dockerd stop DIR"
  dir=$(abspath "$1")
  stop_pid "$dir/dockerd.pid" dockerd
  # dockerd leaves mounts (overlay2 home, netns, shm) behind after SIGKILL;
  # unmount whatever is still mounted under DIR so it can be removed.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# --- podman / buildah --------------------------------------------------------

podman_env() {
  local dir hard
  [ $# -eq 1 ] || die "usage: podman-env DIR"
  dir=$(abspath "$1")
  mkdir -p "$dir/podman-root" "$dir/podman-run" "$dir/podman-tmp" "$dir/podman-networks"
  # No CAP_SYS_RESOURCE here: ulimits must not exceed the hard limit we have.
  hard=$(ulimit -Hn)
  [ "$hard" = unlimited ] && hard=1048576
  cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=16384:16384"]
[network]
network_config_dir = "$dir/podman-networks"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/podman-tmp/events.log"
tmp_dir = "$dir/podman-tmp"
image_copy_tmp_dir = "$dir/podman-tmp"
EOF
  cat >"$dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$dir/podman-root"
runroot = "$dir/podman-run"
EOF
  echo "export CONTAINERS_CONF=$dir/containers.conf"
  echo "export CONTAINERS_STORAGE_CONF=$dir/storage.conf"
  # buildah keeps its temporary build files here rather than /var/tmp.
  echo "export BUILDAH_TMPDIR=$dir/podman-tmp"
}

# podman-reset DIR: unmount and delete the private storage podman-env made.
podman_reset() {
  local dir m
  [ $# -eq 1 ] || die "usage: podman-reset DIR"
  dir=$(abspath "$1")
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir/podman-" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  rm -rf "$dir/podman-root" "$dir/podman-run" "$dir/podman-tmp" "$dir/podman-networks"
}

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

main() {
  [ $# -ge 1 ] || usage
  local what=$1; shift
  case $what in
    registry | dockerd)
      [ $# -ge 1 ] || usage
      local verb=$1; shift
      case "$what $verb" in
        "registry start") registry_start "$@" ;;
        "registry stop") registry_stop "$@" ;;
        "dockerd start") dockerd_start "$@" ;;
        "dockerd stop") dockerd_stop "$@" ;;
        *) usage ;;
      esac ;;
    htpasswd) make_htpasswd "$@" ;;
    podman-env) podman_env "$@" ;;
    podman-reset) podman_reset "$@" ;;
    -h | --help | help) usage ;;
    *) die "unknown peer '$what' (registry, dockerd, podman-env, podman-reset, htpasswd)" ;;
  esac
}

# Sourcing the file gives the functions; running it dispatches.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
