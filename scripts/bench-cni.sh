#!/usr/bin/env bash
# CNI ADD latency benchmark (BENCHMARKS.md, "IPAM and CNI"): from the runtime's call of
# `brindle-cni ADD` to the pod answering a ping from a host on the router's LAN, with file
# IPAM and in Kubernetes mode against the API stand-in; plus an `ip -batch` floor.
#
#   sudo ./scripts/bench-cni.sh                         # 200 pods sequentially + 200 8 at a time, both modes, floor
#   sudo ./scripts/bench-cni.sh --pods 20 --modes file  # quick check
#
# The topology (examples/bench_cni.rs explains it) lives in network namespaces named
# brc<pid>-*: a LAN host, a BIRD 2 router, a switch, two nodes running brindle-node
# (release build) and, in Kubernetes mode, the API stand-in; pods get namespaces
# brc<pid>-p<phase>-<n>. Nothing is configured in the root namespace; traffic stays
# inside these namespaces. At the end, also on failure or interrupt, the harness (by
# PID) and every brc<pid>-* namespace (by name) are removed; the daemons it started die
# with it (PR_SET_PDEATHSIG).
#
# Options: --pods N (per phase, default 200) --concurrency C (default 8) --modes
# file,kubernetes --settle S (pause after each phase, default 5) --no-floor --skip-cni (the
# floors alone) --no-build --out FILE (default results.md in the work
# directory). BENCH_COMMIT=... names the code measured. Needs bird/birdc (bird2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
OUT=""
FLOOR=(--floor)
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --pods|--concurrency|--modes|--settle) ARGS+=("$1" "$2"); shift 2 ;;
        --skip-cni) ARGS+=(--skip-cni); shift ;;
        --no-floor) FLOOR=(); shift ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
command -v bird >/dev/null && command -v birdc >/dev/null || { echo "needs bird and birdc (apt-get install bird2)" >&2; exit 1; }

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$BUILD" = 1 ]; then
    nice cargo build --release --bins -p brindle >&2
    nice cargo build --release -p brindle --example bench_cni >&2
fi
BIN="$TARGET/release/examples/bench_cni"
[ -x "$BIN" ] && [ -x "$TARGET/release/brindle-node" ] && [ -x "$TARGET/release/brindle-cni" ] || { echo "build first" >&2; exit 1; }

WORK="$(mktemp -d /tmp/bench-cni.XXXXXX)"
OUT="${OUT:-$WORK/results.md}"
PREFIX="brc$$"
HARNESS=""
cleanup() {
    if [ -n "$HARNESS" ] && kill -0 "$HARNESS" 2>/dev/null; then
        kill "$HARNESS" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$HARNESS" 2>/dev/null || break; sleep 1; done
        kill -9 "$HARNESS" 2>/dev/null || true
    fi
    for ns in $(ip netns list | awk '{print $1}' | grep "^${PREFIX}-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo "# bench-cni $(date -u +%FT%TZ)"
    echo
    echo "commit ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')}; $(nproc) CPUs; kernel $(uname -r); $(bird --version 2>&1 | head -1); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} >>"$OUT"
"$BIN" --bin "$TARGET/release" --prefix "$PREFIX" --work "$WORK" "${FLOOR[@]}" "${ARGS[@]}" >>"$OUT" 2> >(tee "$WORK/harness.log" >&2) &
HARNESS=$!
wait "$HARNESS"
HARNESS=""
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
cat "$OUT"
echo "results: $OUT; logs under $WORK" >&2
