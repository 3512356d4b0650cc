#!/usr/bin/env bash
# One-step set-up for a fresh Debian 12 machine (run as root), then an optional action:
#   ./setup.sh            install only
#   ./setup.sh demo       install, then run the default scenario
#   ./setup.sh test       install, then run the test suite
# Idempotent: when everything is already present it returns in well under a second.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

APT_PACKAGES=(
  mininet                      # mnexec and Mininet itself (no Open vSwitch: see recommends below)
  strongswan-swanctl charon-systemd libcharon-extra-plugins libstrongswan-extra-plugins
  nftables iptables conntrack dnsmasq-base tcpdump tshark iproute2 iputils-ping iperf3 openssl
  python3 python3-venv python3-dev procps
  chromium                     # headless, for the test of testbed watch's page (no X needed)
)

missing_packages() {
  local pkg status
  for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || echo "$pkg"
  done
}

install_apt() {
  local missing
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]})) || return 0
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Answer the two interactive questions up front (tshark's setuid dumpcap, iperf3's daemon).
  debconf-set-selections <<<'wireshark-common wireshark-common/install-setuid boolean false'
  debconf-set-selections <<<'iperf3 iperf3/start_daemon boolean false'
  # Keep package scripts from starting system-wide daemons (charon, iperf3) in the root
  # namespace of a shared machine: the testbed starts its own, inside its namespaces.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((created_policy)) && rm -f "$policy"
  return 0
}

install_python() {
  local stamp=.venv/.setup-stamp want
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [[ -x .venv/bin/testbed && -f $stamp && "$(cat $stamp)" == "$want" ]]; then
    return 0
  fi
  echo "setup: creating the Python environment in .venv" >&2
  [[ -x .venv/bin/python ]] || /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  # byte-compile once: helpers started per run (relay, probes) then skip compiling
  .venv/bin/python -m compileall -q mipbase testbed agents >/dev/null || true
  echo "$want" >"$stamp"
}

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: must run as root (namespaces, apt): try 'sudo $0 $*'" >&2
  exit 2
fi
install_apt
install_python

case "${1:-}" in
  "") ;;
  demo) shift; exec .venv/bin/testbed run scenarios/roam-nat.yaml "$@" ;;
  test) shift; exec .venv/bin/python -m pytest -q "$@" ;;
  *) echo "setup: unknown action '$1' (use: demo, test)" >&2; exit 2 ;;
esac
