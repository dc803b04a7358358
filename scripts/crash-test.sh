#!/usr/bin/env bash
# The documented crash test: SIGKILL `strata load` of the ~350 MB fixture image at random
# instants (and `strata rmi` after each re-run); after every kill `strata fsck` must pass and
# the interrupted command must simply run again.
#
#   scripts/crash-test.sh [ITERATIONS]      # default 100; STRATA_CRASH_SEED=N to replay
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
scripts/fixtures.sh >/dev/null
export STRATA_CRASH_ITERATIONS=${1:-100}
exec cargo test --release -p strata-cli --test crash -- --nocapture
