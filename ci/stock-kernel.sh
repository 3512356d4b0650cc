#!/usr/bin/env bash
# The stock-kernel stage: the kernel paths (netem, kernel IP-in-IP, XFRM ESP) run for real on
# Debian's stock kernel, in a QEMU VM that boots this machine's root file system (virtme-ng).
# This machine's own kernel has none of them, and its /dev/kvm cannot boot a stock kernel,
# so the VM runs under TCG (~50x slower): the checks are functional (tests/stockkernel), and
# TESTBED_TIME_SCALE stretches the testbed's fixed waits. Run as root; exit status = tests'.
#   ci/stock-kernel.sh             install what the VM needs, boot it, run tests/stockkernel
#   ci/stock-kernel.sh -k roam     pytest arguments go to the run inside the VM
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

VM_PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static)  # busybox: vng's initramfs
./setup.sh  # the project itself (apt and pip), idempotent

missing=()
for pkg in "${VM_PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] ||
    missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "stock-kernel: installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
.venv/bin/python -c 'import virtme_ng' 2>/dev/null || .venv/bin/pip install -q -e '.[vm]'

# Debian's stock kernel (linux-image-amd64), the newest installed; never the running one
kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)
[[ -n "$kernel" ]] || { echo "stock-kernel: no /boot/vmlinuz-*-amd64" >&2; exit 2; }

results="$here/results/stock-kernel/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$results"
scale="${TESTBED_TIME_SCALE:-5}"
echo "stock-kernel: booting $(basename "$kernel") under TCG, time scale $scale, results in $results" >&2
args=""  # pytest's arguments, quoted for the guest's shell
(($#)) && args=$(printf ' %q' "$@")
started=$SECONDS
set +e
# vng finds virtme-run on PATH; the guest sees / read-only and $results read-write
PATH="$here/.venv/bin:$PATH" timeout "${STOCK_KERNEL_TIMEOUT:-1500}" vng \
  -r "$kernel" --disable-kvm --disable-microvm --cpus 2 --memory 4G \
  --rwdir "$results" --cwd "$here" \
  --exec "env TESTBED_TIME_SCALE=$scale TESTBED_VM_RESULTS=$results $here/ci/stock-kernel-guest.sh$args" \
  2>&1 | tee "$results/console.log"
status=${PIPESTATUS[0]}
set -e
echo "stock-kernel: exit $status after $((SECONDS - started)) s" >&2
exit "$status"
