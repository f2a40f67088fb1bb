#!/usr/bin/env bash
# Set up this checkout on a Debian 12 machine, as root: the Debian packages the
# product and its tests need, the kernel-headers link bcc needs, and .venv.
# Idempotent: a second run checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

PKGS=(
  python3-venv python3-pip python3-dev
  python3-bpfcc bpfcc-tools libbpf1 linux-headers-amd64 clang llvm
  python3-pyroute2 python3-scapy python3-sdnotify python3-cryptography
  # the metrics endpoint's text format; structured journal fields under systemd
  python3-prometheus-client python3-systemd
  isc-dhcp-client udhcpc dhcpcd-base isc-dhcp-relay
  kea-dhcp4-server kea-admin keepalived
  # tests/integration/test_metrics_pair.py: a real Prometheus scrapes the pair; promtool
  prometheus
  tcpdump iproute2 iputils-ping procps psmisc strace
  # tests/integration/test_wrong_clock.py: a device whose wall clock is a day ahead
  faketime
  # `make deb` and tests/packaging: debhelper + pybuild, lintian, and a Debian root
  # booted with systemd-nspawn.
  dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
  help2man lintian debootstrap systemd-container util-linux
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  # Keep package maintainer scripts from starting kea, dhcrelay or keepalived
  # on this machine: the tests start their own copies inside namespaces.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
else
  say "Debian packages: all present"
fi

# bcc compiles against /lib/modules/$(uname -r)/{build,source}. A custom kernel
# has no headers package of its own: link Debian's nearest linux-headers there.
kmod=/lib/modules/$(uname -r)
if [ ! -e "$kmod/build/include" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$hdr" ] || [ -z "$common" ]; then
    say "ERROR: no /usr/src/linux-headers-*-amd64 to link for bcc" >&2
    exit 1
  fi
  mkdir -p "$kmod"
  ln -sfn "$hdr" "$kmod/build"
  ln -sfn "$common" "$kmod/source"
  say "no headers for kernel $(uname -r): linked $kmod/build -> $hdr and $kmod/source -> $common (Debian's linux-headers-amd64; bcc compiles against them)"
else
  say "kernel headers for bcc: $kmod/build present"
fi

# The venv runs on Debian's python3 with system site packages, so Debian's
# bcc and sdnotify are the product's imports (as in the .deb); pyroute2 and scapy the tests'.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc, pyroute2, scapy' 2>/dev/null; then
  say "creating .venv on /usr/bin/python3 with --system-site-packages"
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing the package and test tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
else
  say ".venv up to date"
fi
# The lab (lab/: scenario labs, load generators, the demo) is not part of the package:
# the venv finds it in this checkout, so `python -m lab.demo` runs from anywhere.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(cat "$site/dhcp_hotbackup_lab.pth" 2>/dev/null)" != "$PWD" ]; then
  echo "$PWD" > "$site/dhcp_hotbackup_lab.pth"
fi
