#!/bin/sh
# Benchmarks `strata analyze` (the strata-analyze example binary, which is what the CLI runs):
#  1. the ~350 MB fixture image (big.docker.tar, 5 layers), report mode: wall time, peak RSS;
#  2. a synthetic 5.1 GB single-layer image streamed through a FIFO (never on disk):
#     wall time and peak RSS, to check the 200 MB memory budget.
# Usage: bench/analyze/run.sh   (from the repository root)
set -eu
TARGET=${CARGO_TARGET_DIR:-/work/targets/analyze}
PROFILE=${PROFILE:-release}
FIXTURES=${STRATA_FIXTURES:-$HOME/.cache/strata-fixtures}
if [ "$PROFILE" = release ]; then
    CARGO_TARGET_DIR=$TARGET cargo build -q --release -p strata-analyze --examples
else
    CARGO_TARGET_DIR=$TARGET cargo build -q -p strata-analyze --examples
fi
BIN=$TARGET/$PROFILE/examples
if [ -f "$FIXTURES/big.docker.tar" ]; then
    ls -l "$FIXTURES/big.docker.tar"
    for i in 1 2 3; do
        /usr/bin/time -f "big.docker.tar: %e s wall, %U s user, %M KiB max RSS" \
            "$BIN/analyze" --no-tui "$FIXTURES/big.docker.tar" > /dev/null
    done
else
    echo "SKIPPED: $FIXTURES/big.docker.tar not found"
fi
/usr/bin/time -f "synthetic 5.1 GB: %e s wall, %M KiB max RSS" "$BIN/stream_bench" 250000 20480
