#!/usr/bin/env bash
# Brindle lab: network namespaces with real routers, two brindle-nodes and pods.
#
#   sudo ./examples/lab/run.sh                 native routing (pure L3, BGP)
#   sudo ./examples/lab/run.sh --mode vxlan    pod traffic between nodes in VXLAN
#   sudo ./examples/lab/run.sh --mode ipip     IPIP (needs a kernel with ipip; see below)
#   sudo ./examples/lab/run.sh --keep          leave it running (then: ./examples/lab/run.sh down)
#
# Topology (all inside namespaces this script creates; the root namespace is not touched):
#   brl-lan     a LAN host 192.168.1.10, behind the home router
#   brl-router  BIRD 2 "home router"  192.168.1.1 / 10.0.0.254 fd00::254  AS 65000 (MD5; IPv4+IPv6)
#   brl-frr     FRR                   10.0.0.253   AS 65001
#   brl-gobgp   GoBGP                 10.0.0.252   AS 65002 (peers node-a only)
#   brl-node-a  brindle-node          10.0.0.1 fd00::1   AS 64512, pod block 10.65.0.0/26
#   brl-node-b  brindle-node          10.0.0.2 fd00::2   AS 64512, pod block 10.65.0.64/26
#   brl-pa1 brl-pa2 / brl-pb1 brl-pb2   pods on node-a / node-b, created by brindle-cni
#   brl-sw      the bridge joining router, FRR, GoBGP and the nodes (10.0.0.0/24)
# The nodes mesh over iBGP, peer with the routers over eBGP, advertise their blocks and the
# service range; BIRD installs the pod routes in its kernel table so the LAN reaches pods.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUN=/run/brindle-lab
PODS_A=(pa1 pa2) PODS_B=(pb1 pb2)
NS=(brl-sw brl-lan brl-router brl-frr brl-gobgp brl-node-a brl-node-b brl-pa1 brl-pa2 brl-pb1 brl-pb2)

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

MODE=bgp KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    down) down; echo "lab: removed"; exit 0;;
    --keep) KEEP=1;;
    --mode) MODE=$2; shift;;
    *) die "unknown argument $1 (see the header of $0)";;
  esac
  shift
done
case $MODE in bgp|vxlan|ipip) ;; *) die "--mode bgp|vxlan|ipip";; esac

if [ "$MODE" = ipip ] && ! { ip link add brl-ipip-probe type ipip 2>/dev/null && ip link del brl-ipip-probe; }; then
  echo "lab: this kernel has no IPIP (ip link add ... type ipip: Unknown device type)."
  echo "lab: IPIP is tested in a VM instead: cargo test -p brindle-felix --test ipip (uses ../shared/vm/run-in-vm.sh)."
  exit 2
fi

# --- packages and build ------------------------------------------------------
need=""
command -v bird >/dev/null || need="$need bird2"
[ -x /usr/lib/frr/bgpd ] || need="$need frr"
command -v gobgpd >/dev/null || need="$need gobgpd"
command -v ip >/dev/null || need="$need iproute2"
command -v ping >/dev/null || need="$need iputils-ping"
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

# the cluster file for this mode
CLUSTER="$RUN/cluster.yaml"
case $MODE in
  bgp) cp "$HERE/cluster.yaml" "$CLUSTER";;
  vxlan) sed 's/^  blockSize: 26$/  blockSize: 26\n  vxlanMode: Always/' "$HERE/cluster.yaml" > "$CLUSTER";;
  ipip) sed 's/^  blockSize: 26$/  blockSize: 26\n  ipipMode: Always/' "$HERE/cluster.yaml" > "$CLUSTER";;
esac

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
# the LAN behind the home router
ip link add eth-lan netns brl-router type veth peer name eth0 netns brl-lan
ip -n brl-router addr add 192.168.1.1/24 dev eth-lan; ip -n brl-router link set eth-lan up
ip -n brl-lan addr add 192.168.1.10/24 dev eth0; ip -n brl-lan link set eth0 up
ip -n brl-lan route add default via 192.168.1.1
ip netns exec brl-router sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
# the home router is the nodes' default gateway, as on a home LAN
for n in a b; do ip -n "brl-node-$n" route add default via 10.0.0.254; done

# --- routers --------------------------------------------------------------------
cat > "$RUN/bird.conf" <<CONF
router id 10.0.0.254;
protocol device {}
protocol direct lan4 { ipv4; interface "eth-lan"; }
protocol static lan6 { ipv6; route fd01:1::/64 blackhole; }
protocol kernel { ipv4 { export where source = RTS_BGP; }; merge paths on; }
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
vtysh() { command vtysh --vty_socket "$RUN/frr" --config_dir "$RUN/frr" "$@"; }

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
    --config "$CLUSTER" --node-name "node-$n" \
    --state-dir "$RUN/node-$n" --status-socket "$RUN/node-$n.sock" \
    --listen-address "10.0.0.$i" --listen-address "fd00::$i" > "$RUN/node-$n.log" 2>&1 &
  echo $! > "$RUN/node-$n.pid"
done
ctl() { "$BIN/brindlectl" node status --socket "$RUN/node-$1.sock" "${@:2}"; }
routes_json() { "$BIN/brindlectl" node routes --socket "$RUN/node-$1.sock" -o json 2>/dev/null; }

for _ in $(seq 10); do gobgp global rib add -a ipv4 198.51.100.0/24 >/dev/null 2>&1 && break; sleep 0.5; done

# --- pods, through the CNI plugin ---------------------------------------------------
cni() { # node pod command
  printf '{"cniVersion":"1.0.0","name":"brindle","type":"brindle-cni","nodename":"node-%s","stateDir":"%s","config":"%s"}' \
    "$1" "$RUN/node-$1" "$CLUSTER" |
  ip netns exec "brl-node-$1" env CNI_COMMAND="$3" CNI_CONTAINERID="lab-$2" CNI_NETNS="/var/run/netns/brl-$2" \
    CNI_IFNAME=eth0 CNI_PATH="$BIN" CNI_ARGS="K8S_POD_NAMESPACE=lab;K8S_POD_NAME=$2" "$BIN/brindle-cni"
}
pod_ip() { ip -n "brl-$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
# like a kubelet, create pods once the node agent is up (it writes the pod MTU for the plugin)
for n in a b; do
  for _ in $(seq 100); do [ -s "$RUN/node-$n/mtu" ] && break; sleep 0.1; done
done
for p in "${PODS_A[@]}"; do cni a "$p" ADD > "$RUN/cni-$p.json"; done
for p in "${PODS_B[@]}"; do cni b "$p" ADD > "$RUN/cni-$p.json"; done

# --- wait for convergence ----------------------------------------------------------
echo "lab: waiting for sessions and routes (up to 60 s)"
want_a=6 want_b=5   # a: mesh v4/v6 + BIRD v4/v6 + FRR + GoBGP; b: the same without GoBGP
established() { ctl "$1" -o json 2>/dev/null | grep -o '"state": *"Established"' | wc -l; }
converged() {
  [ "$(established a)" -ge $want_a ] && [ "$(established b)" -ge $want_b ] &&
  birdc -s "$RUN/bird.ctl" show route 10.65.0.64/26 2>/dev/null | grep -q unicast &&
  gobgp global rib 2>/dev/null | grep -q 10.65.0.0/26 &&
  routes_json a | grep -q 172.16.1.0/24 && routes_json a | grep -q 198.51.100.0/24 &&
  ip -n brl-node-a route show 10.65.0.64/26 | grep -q . && ip -n brl-node-b route show 10.65.0.0/26 | grep -q .
}
for _ in $(seq 120); do converged && break; sleep 0.5; done

section() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
section "brindlectl node status (node-a)"; ctl a || true
section "brindlectl node status (node-b)"; ctl b || true
section "routes node-a knows (brindlectl node routes)"; "$BIN/brindlectl" node routes --socket "$RUN/node-a.sock" || true
section "node-a kernel routes (ip route; proto 80 = Brindle)"; ip -n brl-node-a route show
section "BIRD home router: birdc show route"; birdc -s "$RUN/bird.ctl" show route || true
section "FRR: show bgp ipv4 unicast"; vtysh -c 'show bgp ipv4 unicast' || true
section "GoBGP: gobgp global rib"; gobgp global rib || true
section "pods"
for p in "${PODS_A[@]}" "${PODS_B[@]}"; do printf '  %-4s %s\n' "$p" "$(pod_ip "$p")"; done

section "result ($MODE mode)"
fail=0
check() { if eval "$2" >/dev/null 2>&1; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
ping1() { ip netns exec "$1" ping -c 1 -W 2 "$2"; }
check "node-a: $want_a BGP sessions Established" '[ "$(established a)" -ge $want_a ]'
check "node-b: $want_b BGP sessions Established" '[ "$(established b)" -ge $want_b ]'
check "BIRD learned both pod blocks and the service range" 'birdc -s $RUN/bird.ctl show route 10.65.0.0/26 | grep -q unicast && birdc -s $RUN/bird.ctl show route 10.65.0.64/26 | grep -q unicast && birdc -s $RUN/bird.ctl show route 10.96.0.0/12 | grep -q unicast'
check "BIRD learned the IPv6 block fd65::/122" 'birdc -s $RUN/bird.ctl show route fd65::/122 | grep -q unicast'
check "FRR learned both pod blocks" 'vtysh -c "show bgp ipv4 unicast" | grep -q 10.65.0.64/26'
check "GoBGP learned node-a's block" 'gobgp global rib | grep -q 10.65.0.0/26'
check "node-a learned node-b's block and routes from BIRD, FRR and GoBGP" 'routes_json a | grep -q 10.65.0.64/26 && routes_json a | grep -q 192.168.1.0/24 && routes_json a | grep -q 172.16.1.0/24 && routes_json a | grep -q 198.51.100.0/24'
check "node-a's kernel has node-b's block (proto 80) and a blackhole for its own" 'ip -n brl-node-a route show 10.65.0.64/26 proto 80 | grep -q . && ip -n brl-node-a route show type blackhole | grep -q 10.65.0.0/26'
for p in "${PODS_A[@]}" "${PODS_B[@]}"; do
  check "LAN host 192.168.1.10 -> pod $p ($(pod_ip "$p"))" "ping1 brl-lan $(pod_ip "$p")"
done
check "pod pa1 -> pod pb1 (across nodes)" "ping1 brl-pa1 $(pod_ip pb1)"
check "pod pb2 -> pod pa2 (across nodes)" "ping1 brl-pb2 $(pod_ip pa2)"
check "pod pa1 -> pod pa2 (same node)" "ping1 brl-pa1 $(pod_ip pa2)"
check "pod pb1 -> LAN host" "ping1 brl-pb1 192.168.1.10"
check "pod MTU is the node's pod MTU ($(cat $RUN/node-a/mtu))" '[ "$(ip -n brl-pa1 -o link show eth0 | grep -o "mtu [0-9]*" | cut -d" " -f2)" = "$(cat $RUN/node-a/mtu)" ]'
check "a 1400-byte ping LAN -> pod pb2 (no fragmentation)" "ip netns exec brl-lan ping -c 1 -W 2 -M do -s 1372 $(pod_ip pb2)"
if [ "$MODE" = vxlan ]; then
  check "node-a routes node-b's block through vxlan.brindle" 'ip -n brl-node-a route show 10.65.0.64/26 | grep -q vxlan.brindle'
fi

# --- network policy: only pa2 may reach pb1 ------------------------------------------
# The pods as Pod documents (their labels) and a Kubernetes NetworkPolicy, added to the
# cluster file both agents read; then the file as it was.
section "network policy: a NetworkPolicy that lets only pod pa2 reach pod pb1"
cp "$CLUSTER" "$RUN/cluster-before-policy.yaml"
{
  cat "$RUN/cluster-before-policy.yaml"
  for p in pa1 pa2 pb1 pb2; do
    node=a; case $p in pb*) node=b;; esac
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: lab, labels: {app: %s}}\nspec: {nodeName: node-%s}\nstatus: {phase: Running, podIP: %s}\n' \
      "$p" "$p" "$node" "$(pod_ip "$p")"
  done
  printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-pa2, namespace: lab}\nspec:\n  podSelector: {matchLabels: {app: pb1}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: pa2}}}]}]\n'
} > "$RUN/cluster-policy.yaml.tmp"
mv "$RUN/cluster-policy.yaml.tmp" "$CLUSTER"
tail -n 5 "$CLUSTER"
for _ in $(seq 40); do ping1 brl-pa1 "$(pod_ip pb1)" >/dev/null 2>&1 || break; sleep 0.25; done
"$BIN/brindlectl" policy explain --config "$CLUSTER" --from lab/pa1 --to lab/pb1 --port icmp/8 || true
"$BIN/brindlectl" policy explain --config "$CLUSTER" --from lab/pa2 --to lab/pb1 --port icmp/8 || true
check "policy: pod pa1 -> pod pb1 is denied" "! ping1 brl-pa1 $(pod_ip pb1)"
check "policy: pod pa2 -> pod pb1 is allowed" "ping1 brl-pa2 $(pod_ip pb1)"
check "policy: node-b has its policy chain" "ip netns exec brl-node-b iptables-save -t filter | grep -q 'brl-pi-knp/lab/only-pa2'"
cp "$RUN/cluster-before-policy.yaml" "$RUN/cluster-policy.yaml.tmp" && mv "$RUN/cluster-policy.yaml.tmp" "$CLUSTER"
for _ in $(seq 40); do ping1 brl-pa1 "$(pod_ip pb1)" >/dev/null 2>&1 && break; sleep 0.25; done
check "policy removed: pod pa1 -> pod pb1 again, no policy chains left" "ping1 brl-pa1 $(pod_ip pb1) && ! ip netns exec brl-node-b iptables-save -t filter | grep -q brl-"
echo
if [ "$fail" = 0 ]; then echo "lab: all checks passed"; else echo "lab: some checks failed; logs in $RUN (run with --keep to inspect)"; fi
if [ "$KEEP" = 1 ]; then
  echo "lab: left running. Try: $BIN/brindlectl node status --socket $RUN/node-a.sock ; ip netns exec brl-lan ping $(pod_ip pa1) ; remove with: $0 down"
fi
exit $fail
