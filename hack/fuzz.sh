#!/usr/bin/env bash
# fuzz.sh [DURATION]: runs every Go fuzz target of the repository (func Fuzz... in a _test.go file)
# for DURATION each (default 10s); Go fuzzes one target per run. `make test` runs it short,
# `make fuzz` long. A failing input is written under the package's testdata/fuzz/<target>/: commit it
# with the fix, and `go test` replays it from then on. FuzzRoot* targets need root (BPF) and are
# skipped without it, as the TestRoot* tests are.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
parallel=${FUZZ_PARALLEL:-2}
mapfile -t targets < <(git ls-files '*_test.go' | xargs grep -HE '^func Fuzz[A-Za-z0-9_]*\(' | sed -E 's/^([^:]*):func (Fuzz[A-Za-z0-9_]*)\(.*/\1 \2/')
for t in "${targets[@]}"; do
  file=${t% *} name=${t#* }
  if [[ $name == FuzzRoot* && $(id -u) != 0 ]]; then
    echo "fuzz: $name needs root; skipped"
    continue
  fi
  echo "fuzz: $name ($duration, ./$(dirname "$file"))"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" -parallel "$parallel" "./$(dirname "$file")"
done
