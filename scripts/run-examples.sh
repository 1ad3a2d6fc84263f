#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the example suite.
#   scripts/run-examples.sh [build-dir]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)" --target patchbay_examples patchbay_examples_own_main patchbay_simple
ctest --test-dir "$build" -L examples -j2 --output-on-failure --timeout 300
