#!/usr/bin/env bash
# Brindle lab: network namespaces with real routers and two brindle-nodes.
#
#   sudo ./examples/lab/run.sh          build, start, show, check, tear down
#   sudo ./examples/lab/run.sh --keep   leave it running (then: ./examples/lab/run.sh down)
#
# Topology (all inside namespaces this script creates; the root namespace is not touched):
#   brl-sw: a bridge joining
#     brl-router  BIRD 2  "home router"  10.0.0.254 fd00::254  AS 65000 (MD5, IPv4+IPv6)
#     brl-frr     FRR                    10.0.0.253            AS 65001
#     brl-gobgp   GoBGP                  10.0.0.252            AS 65002 (peers node-a only)
#     brl-node-a  brindle-node           10.0.0.1  fd00::1     AS 64512, block 10.65.0.0/26
#     brl-node-b  brindle-node           10.0.0.2  fd00::2     AS 64512, block 10.65.0.64/26
# The nodes form a node-to-node mesh and advertise their blocks and the service range.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUN=/run/brindle-lab
NS=(brl-sw brl-router brl-frr brl-gobgp brl-node-a brl-node-b)

die() { echo "lab: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (network namespaces)"

down() {
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$RUN"
}

if [ "${1:-}" = down ]; then down; echo "lab: removed"; exit 0; fi
KEEP=0; [ "${1:-}" = --keep ] && KEEP=1

# --- packages and build ------------------------------------------------------
need=""
command -v bird >/dev/null || need="$need bird2"
[ -x /usr/lib/frr/bgpd ] || need="$need frr"
command -v gobgpd >/dev/null || need="$need gobgpd"
command -v ip >/dev/null || need="$need iproute2"
if [ -n "$need" ]; then
  echo "lab: installing$need"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
echo "lab: building brindle (cargo build --bins)"
(cd "$ROOT" && cargo build --bins -q)
BIN="$ROOT/target/debug"

down
[ "$KEEP" = 1 ] || trap down EXIT
mkdir -p "$RUN"

# --- network -------------------------------------------------------------------
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n brl-sw link add br0 type bridge; ip -n brl-sw link set br0 up
attach() { # ns ifname v4 v6
  ip link add "$2" netns "$1" type veth peer name "p-$2" netns brl-sw
  ip -n brl-sw link set "p-$2" master br0 up
  ip -n "$1" addr add "$3/24" dev "$2"
  [ -n "${4:-}" ] && ip -n "$1" addr add "$4/64" dev "$2" nodad
  ip -n "$1" link set "$2" up
}
attach brl-router eth-r 10.0.0.254 fd00::254
attach brl-frr eth-f 10.0.0.253
attach brl-gobgp eth-g 10.0.0.252
attach brl-node-a eth-a 10.0.0.1 fd00::1
attach brl-node-b eth-b 10.0.0.2 fd00::2

# --- routers --------------------------------------------------------------------
cat > "$RUN/bird.conf" <<CONF
router id 10.0.0.254;
protocol device {}
protocol static lan4 { ipv4; route 192.168.1.0/24 blackhole; }
protocol static lan6 { ipv6; route fd01:1::/64 blackhole; }
template bgp k8s { local as 65000; hold time 30; }
protocol bgp node_a from k8s { neighbor 10.0.0.1 as 64512; password "lab-secret"; ipv4 { import all; export all; }; }
protocol bgp node_b from k8s { neighbor 10.0.0.2 as 64512; password "lab-secret"; ipv4 { import all; export all; }; }
protocol bgp node_a6 from k8s { neighbor fd00::1 as 64512; ipv6 { import all; export all; }; }
protocol bgp node_b6 from k8s { neighbor fd00::2 as 64512; ipv6 { import all; export all; }; }
CONF
ip netns exec brl-router bird -c "$RUN/bird.conf" -s "$RUN/bird.ctl" -P "$RUN/bird.pid"

mkdir -p "$RUN/frr"; chmod 777 "$RUN/frr"
printf 'hostname lab-frr\n' > "$RUN/frr/zebra.conf"
cat > "$RUN/frr/bgpd.conf" <<CONF
frr defaults traditional
hostname lab-frr
router bgp 65001
 bgp router-id 10.0.0.253
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.2 remote-as 64512
 address-family ipv4 unicast
  network 172.16.1.0/24
 exit-address-family
CONF
: > "$RUN/frr/vtysh.conf"
frr_args() { echo "-d -u root -g frrvty -P 0 -f $RUN/frr/$1.conf -i $RUN/frr-$1.pid -z $RUN/frr/zserv.api --vty_socket $RUN/frr"; }
ip netns exec brl-frr /usr/lib/frr/zebra $(frr_args zebra)
for _ in $(seq 50); do [ -S "$RUN/frr/zserv.api" ] && break; sleep 0.1; done
ip netns exec brl-frr /usr/lib/frr/bgpd $(frr_args bgpd)
cp "$RUN/frr-zebra.pid" "$RUN/zebra.pid" 2>/dev/null || true

cat > "$RUN/gobgpd.toml" <<CONF
[global.config]
  as = 65002
  router-id = "10.0.0.252"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 64512
CONF
ip netns exec brl-gobgp gobgpd -f "$RUN/gobgpd.toml" -t toml --api-hosts 127.0.0.1:50051 --pprof-disable > "$RUN/gobgpd.log" 2>&1 &
echo $! > "$RUN/gobgpd.pid"
gobgp() { ip netns exec brl-gobgp gobgp -u 127.0.0.1 -p 50051 "$@"; }

# --- brindle-nodes -----------------------------------------------------------------
for n in a b; do
  i=1; [ "$n" = b ] && i=2
  ip netns exec "brl-node-$n" env RUST_LOG=info "$BIN/brindle-node" \
    --config "$HERE/cluster.yaml" --node-name "node-$n" \
    --state-dir "$RUN/node-$n" --status-socket "$RUN/node-$n.sock" \
    --listen-address "10.0.0.$i" --listen-address "fd00::$i" > "$RUN/node-$n.log" 2>&1 &
  echo $! > "$RUN/node-$n.pid"
done
ctl() { "$BIN/brindlectl" node status --socket "$RUN/node-$1.sock" "${@:2}"; }

for _ in $(seq 10); do gobgp global rib add -a ipv4 198.51.100.0/24 >/dev/null 2>&1 && break; sleep 0.5; done

# --- wait for convergence ----------------------------------------------------------
echo "lab: waiting for sessions (up to 60 s)"
want_a=6 want_b=5   # a: mesh v4/v6 + BIRD v4/v6 + FRR + GoBGP; b: the same without GoBGP
ok=0
for _ in $(seq 120); do
  ea=$(ctl a -o json 2>/dev/null | grep -o '"state": *"Established"' | wc -l || true)
  eb=$(ctl b -o json 2>/dev/null | grep -o '"state": *"Established"' | wc -l || true)
  if [ "$ea" -ge $want_a ] && [ "$eb" -ge $want_b ] && birdc -s "$RUN/bird.ctl" show route 10.65.0.64/26 2>/dev/null | grep -q unicast \
     && gobgp global rib 2>/dev/null | grep -q 10.65.0.0/26 \
     && "$BIN/brindlectl" node routes --socket "$RUN/node-a.sock" -o json 2>/dev/null | grep -q 172.16.1.0/24 \
     && "$BIN/brindlectl" node routes --socket "$RUN/node-a.sock" -o json 2>/dev/null | grep -q 198.51.100.0/24; then ok=1; break; fi
  sleep 0.5
done

section() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
section "brindlectl node status (node-a)"; ctl a || true
section "brindlectl node status (node-b)"; ctl b || true
section "routes node-a learned (brindlectl node routes)"; "$BIN/brindlectl" node routes --socket "$RUN/node-a.sock" || true
section "BIRD home router: birdc show route"; birdc -s "$RUN/bird.ctl" show route || true
section "FRR: show bgp ipv4 unicast"; ip netns exec brl-frr vtysh --vty_socket "$RUN/frr" --config_dir "$RUN/frr" -c 'show bgp ipv4 unicast' || true
section "GoBGP: gobgp global rib"; gobgp global rib || true

section "result"
fail=0
check() { if eval "$2"; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
check "node-a: $want_a sessions Established" '[ "$(ctl a -o json | grep -o "\"state\": *\"Established\"" | wc -l)" -ge $want_a ]'
check "node-b: $want_b sessions Established" '[ "$(ctl b -o json | grep -o "\"state\": *\"Established\"" | wc -l)" -ge $want_b ]'
check "BIRD learned both pod blocks (10.65.0.0/26, 10.65.0.64/26)" 'birdc -s $RUN/bird.ctl show route 10.65.0.0/26 | grep -q unicast && birdc -s $RUN/bird.ctl show route 10.65.0.64/26 | grep -q unicast'
check "BIRD learned the service range 10.96.0.0/12 with community (64512,100)" 'birdc -s $RUN/bird.ctl show route 10.96.0.0/12 all | grep -q "(64512,100)" || birdc -s $RUN/bird.ctl show route 10.65.0.0/26 all | grep -q "(64512,100)"'
check "BIRD learned the IPv6 block fd65::/122" 'birdc -s $RUN/bird.ctl show route fd65::/122 | grep -q unicast'
check "FRR learned both pod blocks" 'ip netns exec brl-frr vtysh --vty_socket $RUN/frr --config_dir $RUN/frr -c "show bgp ipv4 unicast" | grep -q 10.65.0.64/26'
check "GoBGP learned node-a's block" 'gobgp global rib | grep -q 10.65.0.0/26'
check "node-a learned node-b's block over the mesh, and routes from BIRD, FRR and GoBGP" '"$BIN/brindlectl" node routes --socket $RUN/node-a.sock -o json | grep -q 10.65.0.64/26 && "$BIN/brindlectl" node routes --socket $RUN/node-a.sock -o json | grep -q 192.168.1.0/24 && "$BIN/brindlectl" node routes --socket $RUN/node-a.sock -o json | grep -q 172.16.1.0/24 && "$BIN/brindlectl" node routes --socket $RUN/node-a.sock -o json | grep -q 198.51.100.0/24'
echo
echo "  Not in the lab yet: pods, kernel routes and pings (the felix dataplane and CNI plugin)."
if [ "$fail" = 0 ]; then echo "lab: all checks passed"; else echo "lab: some checks failed; logs in $RUN (run with --keep to inspect)"; fi
if [ "$KEEP" = 1 ]; then
  echo "lab: left running. Try: $BIN/brindlectl node status --socket $RUN/node-a.sock ; birdc -s $RUN/bird.ctl show protocols ; remove with: $0 down"
fi
exit $fail
