#!/usr/bin/env bash
# IPAM benchmark (BENCHMARKS.md, "IPAM and CNI"): allocation throughput of Brindle's
# Calico-compatible IPAM (src/ipam) under contention — the in-memory store on a
# multi-thread runtime (with and without injected conflicts), the same tasks on a
# current-thread runtime (baseline without contention), and the file store (flock) with
# one OS thread and store instance per worker on one directory.
#
#   ./scripts/bench-ipam.sh                          # 8 nodes × 4 workers, 1000 allocations each, 3 reps
#   ./scripts/bench-ipam.sh --nodes 2 --workers 2 --ops 200 --reps 1   # quick check
#
# Options are passed to the harness (examples/bench_ipam.rs): --nodes N --workers M
# --ops K (allocations per worker, memory store) --file-ops K (file store, default 50) --window W
# (addresses a worker keeps before releasing its oldest) --conflicts N,N (every N-th write
# refused, besides 0) --pool CIDR --block-size B --reps R --no-file; and --no-build here.
# No root needed; nothing leaves the process but the file store's directory under
# $TMPDIR (removed after each run). BENCH_COMMIT=... names the code measured.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
ARGS=()
for a in "$@"; do
    case "$a" in
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) ARGS+=("$a") ;;
    esac
done
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$BUILD" = 1 ]; then
    nice cargo build --release -p brindle --example bench_ipam >&2
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-ipam.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "# bench-ipam $(date -u +%FT%TZ)"
echo
echo "commit ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')}; $(nproc) CPUs; kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$TARGET/release/examples/bench_ipam" --work "$WORK" "${ARGS[@]}"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
