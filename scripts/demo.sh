#!/usr/bin/env bash
# The main job, offline, on a fresh machine: install the tools, build strata, make the
# busybox base image from Debian's package, then use strata on it and on the example
# Dockerfile. The store is ./.strata-demo unless STRATA_ROOT says otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
cargo build --release -p strata-cli
fixtures=$(scripts/fixtures.sh --print-dir)
strata=$PWD/target/release/strata
export STRATA_ROOT=${STRATA_ROOT:-$PWD/.strata-demo}
set -x
"$strata" load -i "$fixtures/busybox.docker.tar"
"$strata" build --call=outline -f examples/hello/Dockerfile examples/hello
"$strata" build --call=check -f examples/hello/Dockerfile examples/hello || true
"$strata" import --change 'CMD ["/bin/sh"]' "$fixtures/busybox/rootfs.tar" demo/imported:1
"$strata" images
"$strata" history busybox
"$strata" save -o "$STRATA_ROOT/busybox.tar" busybox:latest demo/imported:1
"$strata" system df
"$strata" fsck
