#!/usr/bin/env bash
# Checks each vendored crate: its source is the registry release plus the
# patch kept beside it (nothing else edited), and its own tests pass with
# the patch. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
vendor=$PWD
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

check() { # crate version
  local crate=$1 version=$2
  echo "-- $crate $version: release + $crate.patch, then its tests"
  # The release's source, from the registry (cargo's own download).
  mkdir -p "$tmp/fetch/src"; : > "$tmp/fetch/src/lib.rs"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n[workspace]\n' \
    "$crate" "$version" > "$tmp/fetch/Cargo.toml"
  (cd "$tmp/fetch" && cargo fetch -q)
  local src
  src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "$crate-$version" | head -1)
  [ -n "$src" ] || { echo "$crate $version: not in the registry cache" >&2; exit 1; }
  cp -r "$src" "$tmp/$crate"
  (cd "$tmp/$crate" && git apply -p1 "$vendor/$crate.patch")
  diff -r "$tmp/$crate/src" "$vendor/$crate/src" \
    || { echo "$crate: vendor/$crate/src is not release $version + $crate.patch" >&2; exit 1; }
  cp -r "$vendor/$crate" "$tmp/$crate-test"
  (cd "$tmp/$crate-test" && CARGO_TARGET_DIR="$vendor/../target/vendor" cargo test -q 2>&1 | grep -E '^test result' )
}

check pingora-http 0.9.1
