#!/usr/bin/env bash
# Route-programming benchmark (see BENCHMARKS.md): builds felix's `bench_routes` example in
# release mode and runs it in throw-away network namespaces (never the root namespace).
#   sudo ./scripts/bench-routes.sh                         N = 10,000 and 100,000, 3 repetitions
#   sudo ./scripts/bench-routes.sh --sizes 1000 --reps 1   quick check
# Other options: --ifaces 100 (number of cali veths), --batch 128, --unclaimed-max N.
# Results go to stdout (markdown tables), progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-routes.sh: run as root (creates network namespaces)" >&2; exit 1; }
command -v ip >/dev/null || { echo "bench-routes.sh: needs iproute2 (ip)" >&2; exit 1; }
if ! command -v cargo >/dev/null; then
  for d in "$HOME/.cargo/bin" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.cargo/bin"; do
    [ -x "$d/cargo" ] && PATH="$d:$PATH" && break
  done
fi

echo "bench-routes.sh: cargo build --release -p brindle-felix --example bench_routes" >&2
cargo build --release -q -p brindle-felix --example bench_routes

# The program deletes its namespaces itself (also on panic); this trap covers a kill.
ns="bench$$"
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  ip netns del "${ns}p" 2>/dev/null || true
  rm -rf "${TMPDIR:-/tmp}/brindle-bench-$ns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-routes.sh: kernel $(uname -r), $(nproc) CPUs, namespaces $ns and ${ns}p" >&2
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
"${target_dir:-target}/release/examples/bench_routes" --ns "$ns" "$@"
