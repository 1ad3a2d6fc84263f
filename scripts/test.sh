#!/usr/bin/env bash
# The test command: installs what is missing, builds with warnings as errors, runs every test.
#   scripts/test.sh [build-dir]        (default: build)
# PATCHBAY_CTEST_ARGS adds ctest arguments to both passes; PATCHBAY_VM=0 leaves out the second
# pass (the tests that boot a QEMU guest, label vm).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/scripts/install-deps.sh"
# -g1: line tables are all a failing test's backtrace needs, and they compile a quarter faster
# than full debug info (-g).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DPATCHBAY_WERROR=ON ${PATCHBAY_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" -j2 --output-on-failure --timeout 300 -LE vm ${PATCHBAY_CTEST_ARGS:-}
# Guests under TCG are CPU-bound and their tests timing-sensitive: one at a time, after the rest.
if [ "${PATCHBAY_VM:-1}" != 0 ]; then
  ctest --test-dir "$build" -j1 --output-on-failure -L vm ${PATCHBAY_CTEST_ARGS:-}
fi
