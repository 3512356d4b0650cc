#!/usr/bin/env bash
# Inside the stock-kernel VM (see ci/stock-kernel.sh): prepare what a fresh boot lacks, show
# which path each feature takes, and run the kernel-path tests; they must not skip here.
set -euo pipefail
cd "$(dirname "$0")/.."
for module in tun sch_netem ipip esp4 xfrm_user; do
  modprobe "$module"
done
# virtme's devtmpfs has no /dev/net/tun until the module registers it (and not always then)
[[ -e /dev/net/tun ]] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }
export MPLCONFIGDIR=/tmp/matplotlib TESTBED_REQUIRE_KERNEL_PATHS=1
.venv/bin/testbed doctor
exec .venv/bin/python -m pytest -q -rs tests/stockkernel \
  --junit-xml "${TESTBED_VM_RESULTS:-/tmp}/junit.xml" "$@"
