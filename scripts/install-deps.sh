#!/usr/bin/env bash
# Installs every Debian 12 package the project needs to build, test and benchmark, and the UI
# tests' npm packages (ui/package-lock.json) into ui/node_modules.
# Idempotent: what is already present is skipped, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake g++ clang-format pkg-config git
  # library dependencies
  libnl-3-dev libnl-route-3-dev libnftnl-dev libmnl-dev
  libboost-dev libboost-filesystem-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libtomlplusplus-dev libcli11-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # tools the tests use to observe from outside (never used by the library)
  iproute2 iputils-ping nftables iperf3 procps util-linux passwd tcpdump
  # `patchbay vm`: QEMU, a guest kernel with sch_netem, and what its initramfs is built from
  qemu-system-x86 linux-image-amd64 busybox cpio kmod xz-utils
  # the devtools UI's tests: a real headless browser, and fonts for readable screenshots
  chromium fonts-dejavu-core
)
# Node.js runs the UI tests; Debian's nodejs and npm unless the machine has its own.
if ! command -v npm > /dev/null; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The UI tests drive Chromium with playwright-core, and prettier checks the UI's formatting;
# both pinned by the committed lock file. The browser is Debian's: playwright never downloads one.
ui=$(cd "$(dirname "$0")/../ui" && pwd)
# npm ci only when an installed package's version is not the locked one.
if ! (cd "$ui" && node -e '
  const lock = require("./package-lock.json").packages;
  for (const [where, entry] of Object.entries(lock)) {
    if (where && require("./" + where + "/package.json").version !== entry.version) process.exit(1);
  }
' 2> /dev/null); then
  echo "install-deps: npm ci in ui/"
  (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
fi
