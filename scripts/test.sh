#!/usr/bin/env bash
# Brindle's whole test suite, from a fresh Debian machine (run as root):
# installs the real routers and tools the tests use, then formatting, lints and tests.
#   sudo ./scripts/test.sh            everything (what CI runs)
#   sudo ./scripts/test.sh -- FILTER  only tests matching FILTER
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (tests create network namespaces)" >&2; exit 1; }

pkgs="bird2 frr gobgpd exabgp iproute2 iptables ipset iputils-ping tcpdump procps curl containerd runc containernetworking-plugins busybox-static util-linux python3-venv"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "test.sh: installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Leftovers of an interrupted earlier run would collide with nothing (names are unique), but
# say so: tests must clean up after themselves.
left=$(ip netns list | awk '{print $1}' | grep -E '^(b[0-9]+x|brl-|cap[0-9]|smk-)' || true)
[ -z "$left" ] || echo "test.sh: note: namespaces left by an earlier run: $left"

if [ "${1:-}" = "--" ]; then
  shift
  exec cargo test --workspace -- "$@"
fi

echo "test.sh: Kubernetes manifests (offline schema validation)"
bash scripts/validate-manifests.sh
echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "test.sh: cargo test"
cargo test --workspace
