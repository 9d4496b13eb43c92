#!/usr/bin/env bash
# Datastore benchmark (BENCHMARKS.md, "Kubernetes datastore: time to in-sync and RSS"):
# brindle-node (release) against the API stand-in holding 5,000 Nodes, 100,000 Pods,
# 2,000 Services + EndpointSlices, 500 NetworkPolicies and Calico's CRDs (scale 1), and
# the same at 1/10 (scale 0.1).
#
#   sudo ./scripts/bench-datastore.sh                       # scales 0.1 and 1, 3 agent runs each
#   sudo ./scripts/bench-datastore.sh --scales 0.1 --reps 1 # quick check
#   sudo ./scripts/bench-datastore.sh --profile             # also the in-process stage profile
#   sudo ./scripts/bench-datastore.sh --agent-env MALLOC_ARENA_MAX=2
#
# Everything runs in a network namespace of its own (brbench-ds-<pid>) with only
# loopback up: the stand-in listens on 127.0.0.1 there, the agent's BGP listener too, and
# the generated BGPConfiguration disables the node-to-node mesh (no peers at all), so no
# packet can leave. The namespace is deleted at the end, also on failure or interrupt;
# the harness kills the agent processes it started (by PID; they also get SIGKILL if the
# harness dies: PR_SET_PDEATHSIG).
#
# Options: --scales S,S,...  --reps N (agent runs per scale)  --steady SECONDS (run time
# after sync before the steady RSS sample, default 10)  --profile  --no-build
# --agent-env KEY=VALUE (repeatable)  --agent PATH (another brindle-node binary)
# --list-reps N (stand-in-alone list repetitions, default 3)  --rss-limit-mb MB (a run
# whose agent RSS passes this is stopped, default 12000)  --perf FILE (perf record of
# each agent run, spawn to sync)  --out FILE (results, default results.md in the work
# directory). BENCH_COMMIT=... names the code measured when it is not this checkout's.
# Build output goes to $CARGO_TARGET_DIR (default ./target).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALES="0.1,1"
REPS=3
STEADY=10
PROFILE=0
BUILD=1
AGENT=""
OUT=""
LIST_REPS=3
EXTRA=()
AGENT_ENV=()
while [ $# -gt 0 ]; do
    case "$1" in
        --scales) SCALES="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --steady) STEADY="$2"; shift 2 ;;
        --profile) PROFILE=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --agent) AGENT="$2"; shift 2 ;;
        --agent-env) AGENT_ENV+=(--agent-env "$2"); shift 2 ;;
        --list-reps) LIST_REPS="$2"; shift 2 ;;
        --perf) EXTRA+=(--perf "$2"); shift 2 ;;
        --rss-limit-mb) EXTRA+=(--rss-limit-mb "$2"); shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespace)" >&2; exit 1; }

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$BUILD" = 1 ]; then
    cargo build --release --bins -p brindle -p brindle-kube-standin >&2
    cargo build --release -p brindle --example bench_datastore >&2
fi
BIN="$TARGET/release/examples/bench_datastore"
AGENT="${AGENT:-$TARGET/release/brindle-node}"
[ -x "$BIN" ] && [ -x "$AGENT" ] || { echo "missing $BIN or $AGENT (build first)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/bench-datastore.XXXXXX)"
OUT="${OUT:-$WORK/results.md}"
NS="brbench-ds-$$"
HARNESS=""
cleanup() {
    if [ -n "$HARNESS" ] && kill -0 "$HARNESS" 2>/dev/null; then
        kill "$HARNESS" 2>/dev/null || true
        sleep 1
        kill -9 "$HARNESS" 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
# only loopback, up
if [ "$(ip -n "$NS" -o link show | wc -l)" != 1 ]; then
    echo "namespace $NS has more than loopback" >&2
    exit 1
fi

# Run one harness command in the namespace, in the background so that a trap can kill it.
in_ns() {
    ip netns exec "$NS" "$BIN" "$@" >>"$OUT" 2>>"$WORK/harness.log" &
    HARNESS=$!
    wait "$HARNESS"
    HARNESS=""
}

{
    echo "# bench-datastore $(date -u +%FT%TZ)"
    echo
    echo "commit ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')}; $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB; kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} >>"$OUT"
IFS=, read -ra SC <<<"$SCALES"
for s in "${SC[@]}"; do
    echo "scale $s: agent runs" >&2
    in_ns run --scale "$s" --work "$WORK/s$s" --agent "$AGENT" --reps "$REPS" --steady "$STEADY" --list-reps "$LIST_REPS" "${AGENT_ENV[@]}" "${EXTRA[@]}"
    echo >>"$OUT"
    if [ "$PROFILE" = 1 ]; then
        echo "scale $s: profile" >&2
        in_ns profile --scale "$s" --work "$WORK/p$s"
        echo >>"$OUT"
    fi
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
cat "$OUT"
echo "results: $OUT; agent logs under $WORK" >&2
