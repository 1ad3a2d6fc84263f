#!/usr/bin/env bash
# The test command: installs what is missing, builds with warnings as errors, runs every test.
#   scripts/test.sh [build-dir]        (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPATCHBAY_WERROR=ON ${PATCHBAY_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" -j2 --output-on-failure --timeout 300 ${PATCHBAY_CTEST_ARGS:-}
