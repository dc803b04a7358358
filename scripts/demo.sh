#!/usr/bin/env bash
# The main job, offline, on a fresh machine: install the tools, build strata, make the
# busybox base image from Debian's package, build examples/offline (a multi-stage
# Dockerfile that needs no network) into an image, then inspect, analyse and save it.
# The store is ./.strata-demo unless STRATA_ROOT says otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
cargo build --release -p strata-cli
fixtures=$(scripts/fixtures.sh --print-dir)
strata=$PWD/target/release/strata
export STRATA_ROOT=${STRATA_ROOT:-$PWD/.strata-demo}
set -x
"$strata" load -i "$fixtures/busybox.docker.tar"
"$strata" build -t demo/site:1 examples/offline
"$strata" history demo/site:1
"$strata" inspect --format '{{json .Config.Cmd}} user={{.Config.User}}' demo/site:1
"$strata" analyze --no-tui demo/site:1
"$strata" lint examples/offline/Dockerfile || true
# examples/hello compiles C in a Debian stage (apt-get reaches Debian's mirror): its outline.
"$strata" build --call=outline examples/hello
"$strata" import --change 'CMD ["/bin/sh"]' "$fixtures/busybox/rootfs.tar" demo/imported:1
"$strata" images
"$strata" history busybox
"$strata" save -o "$STRATA_ROOT/demo.tar" demo/site:1 demo/imported:1
"$strata" system df
"$strata" fsck
