#!/usr/bin/env bash
# Heap profile of brindle-node in the datastore benchmark (BENCHMARKS.md, "Kubernetes
# datastore", "Memory"): one agent run of scripts/bench-datastore.sh under heaptrack's
# preload library, SIGKILLed 3 s after its "datastore in sync" line, so that what
# heaptrack reports as leaked is the live heap at that point (a SIGTERM would let the
# agent free everything first); heaptrack's peak is the run's heap high-water mark.
#
#   sudo ./scripts/heap-profile-datastore.sh OUT.gz [SCALE] [AGENT]   # SCALE default 0.1
#   heaptrack_print -f OUT.gz -p 0 -a 0 -T 0 -l 0 --flamegraph-cost-type leaked -F live.stacks
#   heaptrack_print -f OUT.gz -p 1 -n 20                               # peak consumers
#
# Needs the Debian package heaptrack; builds nothing (run bench-datastore.sh once first,
# or pass AGENT). The heap figures exclude heaptrack's own memory; the VmRSS printed at
# the kill includes it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: $0 OUT.gz [SCALE] [AGENT]}"
SCALE="${2:-0.1}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
AGENT="${3:-$TARGET/release/brindle-node}"
PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so
INTERPRET=/usr/lib/heaptrack/libexec/heaptrack_interpret
[ -e "$PRELOAD" ] && [ -x "$INTERPRET" ] || { echo "needs heaptrack (apt-get install heaptrack)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespace)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/heap-profile.XXXXXX)"
PIPE="$WORK/heaptrack.pipe"
mkfifo "$PIPE"
touch "$WORK/started"
"$INTERPRET" < "$PIPE" | gzip -c > "$OUT" &
INTERP=$!
./scripts/bench-datastore.sh --scales "$SCALE" --reps 1 --list-reps 1 --steady 10 --no-build \
    --agent "$AGENT" --out "$WORK/results.md" --rss-limit-mb 4000 \
    --agent-env "LD_PRELOAD=$PRELOAD" --agent-env "DUMP_HEAPTRACK_OUTPUT=$PIPE" > "$WORK/bench.log" 2>&1 &
BENCH=$!
LOG=""
for _ in $(seq 1 1200); do
    # this run's log: written after this script started (nanosecond mtimes)
    LOG="$(find /tmp -maxdepth 4 -path "/tmp/bench-datastore.*/s$SCALE/agent-0/agent.log" \
        -newer "$WORK/started" 2>/dev/null | head -1)"
    if [ -n "$LOG" ] && grep -q "datastore in sync" "$LOG"; then
        break
    fi
    sleep 0.5
done
[ -n "$LOG" ] || { echo "no sync seen (see $WORK/bench.log)" >&2; exit 1; }
sleep 3
PID="$(pgrep -n -f -- "^$AGENT --datastore kubernetes" || true)"
[ -n "$PID" ] || { echo "agent not found (see $WORK/bench.log)" >&2; exit 1; }
grep -E "VmHWM|VmRSS" "/proc/$PID/status"
kill -KILL "$PID"
wait "$INTERP" || true
wait "$BENCH" || true
echo "heap profile: $OUT (bench log: $WORK/bench.log)"
