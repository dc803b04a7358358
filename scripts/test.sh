#!/usr/bin/env bash
# The project's test command (the README's): format, lints, release build of
# the CLI, then every test in the workspace. Run from anywhere.
#
# Env: STRATA_BIN (exported: the CLI tests run this binary), STRATA_FIXTURES
# and the KEY=PATH values of scripts/fixtures.sh (exported for the tests).
# STRATA_TEST_SKIP_FIXTURES=1 skips building fixtures (tests needing them skip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
t0=$SECONDS
phase() { printf '\n== %s (at %d s)\n' "$*" $((SECONDS - t0)); }

phase "cargo fmt --check"
cargo fmt --all --check

phase "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

phase "cargo build --release -p strata-cli"
meta=$(cargo metadata --no-deps --format-version 1)
if jq -e '.packages[] | select(.name == "strata-cli")' <<<"$meta" >/dev/null; then
  cargo build --release -p strata-cli
  export STRATA_BIN=$ROOT/target/release/strata
  [ -x "$STRATA_BIN" ] || { echo "test.sh: $STRATA_BIN was not built" >&2; exit 1; }
else
  # The CLI crate is not in the workspace yet; CLI tests skip without it.
  echo "test.sh: warning: no strata-cli package in the workspace; STRATA_BIN not set" >&2
fi

if [ "${STRATA_TEST_SKIP_FIXTURES:-0}" != 1 ]; then
  phase "fixtures"
  fixtures_dir=$(scripts/fixtures.sh --print-dir)
  # Export STRATA_FIXTURES and every KEY=PATH the fixtures script wrote.
  set -a
  # shellcheck disable=SC1091
  . "$fixtures_dir/fixtures.env"
  set +a
fi

phase "cargo nextest run"
cargo nextest run --workspace --release --no-fail-fast

phase "cargo test --doc"
cargo test --doc --workspace --release

phase "all passed in $((SECONDS - t0)) s"
