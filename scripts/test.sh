#!/usr/bin/env bash
# The project's test command (the README's): format, lints, then every test in
# the workspace (nextest) and the doc tests. Run from anywhere.
#
# Env: STRATA_FIXTURES
# and the KEY=PATH values of scripts/fixtures.sh (exported for the tests).
# STRATA_TEST_SKIP_FIXTURES=1 skips building fixtures (tests needing them skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
t0=$SECONDS
phase() { printf '\n== %s (at %d s)\n' "$*" $((SECONDS - t0)); }

phase "cargo fmt --check"
cargo fmt --all --check

phase "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

if [ "${STRATA_TEST_SKIP_FIXTURES:-0}" != 1 ]; then
  phase "fixtures"
  fixtures_dir=$(scripts/fixtures.sh --print-dir)
  # Export STRATA_FIXTURES and every KEY=PATH the fixtures script wrote.
  set -a
  # shellcheck disable=SC1091
  . "$fixtures_dir/fixtures.env"
  set +a
fi

# The dev profile (dependencies at opt-level 2, see Cargo.toml) compiles much faster than
# --release on CI's two cores, and the tests run the `strata` binary of the same profile
# (CARGO_BIN_EXE_strata), so no separate release build is needed.
phase "cargo nextest run"
cargo nextest run --workspace --no-fail-fast

phase "cargo test --doc"
cargo test --doc --workspace

phase "all passed in $((SECONDS - t0)) s"
