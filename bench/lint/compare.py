#!/usr/bin/env python3
"""Compare strata lint with hadolint over a directory of Dockerfiles.

usage: compare.py STRATA_LINT_BINARY CORPUS_DIR
Runs both with --format json (no config) on every file and compares the
(line, code) pairs of DL rules (hadolint's SC ShellCheck codes and Strata's
ST codes are left out). Prints totals and the disagreements per code.
"""
import collections, json, os, subprocess, sys

strata, corpus = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
only_s = collections.Counter(); only_h = collections.Counter(); both = collections.Counter()
examples = collections.defaultdict(list)
errs = 0
parse_fail = []
for f in files:
    def run(cmd):
        p = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
        try:
            return {(d["line"], d["code"]) for d in json.loads(p.stdout or "[]") if d["code"].startswith("DL")}
        except json.JSONDecodeError:
            return None
    s = run([strata, "-f", "json", "--no-fail", f])
    h = run(["hadolint", "-f", "json", "--no-fail", f])
    if s is None or h is None:
        errs += 1
        continue
    if any(c == "DL1000" for _, c in h) or any(c == "DL1000" for _, c in s):
        parse_fail.append((os.path.basename(f), any(c == "DL1000" for _, c in s), any(c == "DL1000" for _, c in h)))
        continue
    # DL1000 (parse error) lines differ between parsers; compare codes only.
    for line, code in s & h: both[code] += 1
    for line, code in s - h:
        only_s[code] += 1; examples[("strata", code)].append(f"{os.path.basename(f)}:{line}")
    for line, code in h - s:
        only_h[code] += 1; examples[("hadolint", code)].append(f"{os.path.basename(f)}:{line}")
agree = sum(both.values()); total = agree + sum(only_s.values()) + sum(only_h.values())
print(f"files: {len(files)}  unreadable output: {errs}  not compared (a parse error in either tool): {len(parse_fail)}")
for name, ps, ph in parse_fail:
    print(f"  parse error in {'strata ' if ps else ''}{'hadolint' if ph else ''}: {name}")
print(f"DL findings: agree {agree}, only strata {sum(only_s.values())}, only hadolint {sum(only_h.values())}; agreement {100*agree/max(total,1):.1f}%")
for code in sorted(set(only_s) | set(only_h)):
    print(f"  {code}: both {both[code]}, only strata {only_s[code]}, only hadolint {only_h[code]}")
    for who in ("strata", "hadolint"):
        ex = examples[(who, code)][:3]
        if ex: print(f"      only {who}: {', '.join(ex)}")
