#!/usr/bin/env bash
# Fails when the protos break compatibility (buf breaking, the FILE rules of buf.yaml) with
# the git main branch.
#
#   tools/buf_breaking.sh            # working tree vs main (see below when HEAD is main)
#   tools/buf_breaking.sh REF        # working tree vs any commit-ish (e.g. origin/main, v1.2.0)
#
# On main itself with no uncommitted proto changes, comparing with main proves nothing, so
# the comparison is with the previous commit on main (main~1). The check is skipped, with a
# message and exit 0, when the reference has no protos yet (the very first commit) or is not
# in the clone (e.g. a shallow clone without history).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUF=${BUF:-$ROOT/tools/buf/node_modules/.bin/buf}

ref=${1:-${BUF_BREAKING_AGAINST:-main}}
skip() { echo "buf_breaking: skipped: $*"; exit 0; }

git rev-parse --git-dir >/dev/null 2>&1 || skip "not a git checkout"
if ! git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
  if git rev-parse --verify --quiet "origin/$ref^{commit}" >/dev/null; then
    ref=origin/$ref
  else
    skip "no $ref in this clone"
  fi
fi
if [ $# -eq 0 ] && [ -z "${BUF_BREAKING_AGAINST:-}" ] &&
   [ "$(git rev-parse HEAD)" = "$(git rev-parse "$ref^{commit}")" ] &&
   git diff --quiet HEAD -- protos buf.yaml; then
  git rev-parse --verify --quiet "$ref~1^{commit}" >/dev/null ||
    skip "HEAD is $ref and it has no parent commit in this clone (first commit or shallow clone)"
  echo "buf_breaking: HEAD is $ref with no uncommitted proto changes: comparing with $ref~1"
  ref="$ref~1"
fi
sha=$(git rev-parse "$ref^{commit}")
git cat-file -e "$sha:protos" 2>/dev/null || skip "$ref ($sha) has no protos/ yet (first commit)"

if git cat-file -e "$sha:buf.yaml" 2>/dev/null; then
  against=".git#ref=$sha"
else
  against=".git#ref=$sha,subdir=protos"
fi
echo "buf_breaking: protos vs $ref ($sha)"
"$BUF" breaking . --against "$against"
echo "buf_breaking: no breaking changes"
