#!/bin/sh
# install-cni.sh: the brindle-node DaemonSet's init container. It puts the CNI plugin and
# its configuration on the host, as Calico's install-cni does:
#
#   1. copies brindle-cni into the host's CNI plugin directory (/opt/cni/bin);
#   2. writes a kubeconfig for the plugin, /etc/cni/net.d/brindle-kubeconfig, from this
#      pod's ServiceAccount token and CA, with the API server at
#      https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT;
#   3. writes the network configuration /etc/cni/net.d/10-brindle.conflist.
#
# Every file is written to a temporary name in the same directory and renamed, so the
# container runtime never reads a half-written file (nor runs a half-copied binary).
#
# The token is the pod's own: it stays valid while this pod exists (bound tokens end with
# their pod; the next pod's init container writes a fresh one). See README.md.
#
# Environment (the defaults are the DaemonSet's mounts):
#   NODENAME                 this node's name (required; the DaemonSet sets it from spec.nodeName)
#   KUBERNETES_SERVICE_HOST  set by the kubelet in every pod (required)
#   KUBERNETES_SERVICE_PORT  set by the kubelet in every pod (required)
#   CNI_BIN_DIR        where the host's CNI plugin directory is mounted    (/host/opt/cni/bin)
#   CNI_NET_DIR        where the host's CNI config directory is mounted    (/host/etc/cni/net.d)
#   CNI_NET_DIR_HOST   the same directory as the host (and the plugin) sees it (/etc/cni/net.d)
#   CNI_CONF_NAME      the network configuration file name                 (10-brindle.conflist)
#   CNI_PLUGIN         the plugin binary to install           (/usr/local/bin/brindle-cni)
#   SA_DIR             the ServiceAccount mount  (/var/run/secrets/kubernetes.io/serviceaccount)
#   STATE_DIR          brindle-node's --state-dir, as the host sees it      (/var/lib/brindle)
#   CNI_MTU            pod MTU to write into the config (default: none, the plugin then
#                      uses the MTU the agent writes to STATE_DIR/mtu)
#   CNI_LOG_LEVEL      error, warn, info or debug                           (info)
set -eu

CNI_BIN_DIR=${CNI_BIN_DIR:-/host/opt/cni/bin}
CNI_NET_DIR=${CNI_NET_DIR:-/host/etc/cni/net.d}
CNI_NET_DIR_HOST=${CNI_NET_DIR_HOST:-/etc/cni/net.d}
CNI_CONF_NAME=${CNI_CONF_NAME:-10-brindle.conflist}
CNI_PLUGIN=${CNI_PLUGIN:-/usr/local/bin/brindle-cni}
SA_DIR=${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
STATE_DIR=${STATE_DIR:-/var/lib/brindle}
CNI_MTU=${CNI_MTU:-}
CNI_LOG_LEVEL=${CNI_LOG_LEVEL:-info}

log() { echo "install-cni: $*"; }
die() { echo "install-cni: error: $*" >&2; exit 1; }

[ -n "${NODENAME:-}" ] || die "NODENAME is not set"
[ -n "${KUBERNETES_SERVICE_HOST:-}" ] || die "KUBERNETES_SERVICE_HOST is not set (not in a pod?)"
[ -n "${KUBERNETES_SERVICE_PORT:-}" ] || die "KUBERNETES_SERVICE_PORT is not set (not in a pod?)"
[ -r "$SA_DIR/token" ] || die "no ServiceAccount token at $SA_DIR/token"
[ -r "$SA_DIR/ca.crt" ] || die "no ServiceAccount CA at $SA_DIR/ca.crt"
[ -x "$CNI_PLUGIN" ] || die "no plugin binary at $CNI_PLUGIN"
[ -d "$CNI_BIN_DIR" ] || die "CNI plugin directory $CNI_BIN_DIR is not mounted"
[ -d "$CNI_NET_DIR" ] || die "CNI config directory $CNI_NET_DIR is not mounted"
case "$CNI_MTU" in
  *[!0-9]*) die "CNI_MTU must be a number, not '$CNI_MTU'" ;;
esac
# The node name goes into JSON and a sed replacement: a DNS name, nothing else.
case "$NODENAME" in
  *[!A-Za-z0-9.-]*) die "NODENAME '$NODENAME' is not a DNS name" ;;
esac
case "$CNI_LOG_LEVEL" in
  error | warn | info | debug) ;;
  *) die "CNI_LOG_LEVEL must be error, warn, info or debug, not '$CNI_LOG_LEVEL'" ;;
esac

# write_file DEST MODE: standard input to DEST, atomically (a temporary file in the same
# directory, then rename), with permissions MODE.
write_file() {
  tmp="$(dirname "$1")/.$(basename "$1").tmp.$$"
  (umask 077 && cat >"$tmp")
  chmod "$2" "$tmp"
  mv -f "$tmp" "$1"
}
# Leave no temporary file behind if anything fails.
trap 'rm -f "$CNI_NET_DIR"/.*.tmp.$$ "$CNI_BIN_DIR"/.brindle-cni.tmp.$$' EXIT

# 1. The plugin binary. cp to a temporary name then mv: a running plugin keeps its old
# inode and a new one never sees a partial file.
tmp_bin="$CNI_BIN_DIR/.brindle-cni.tmp.$$"
cp "$CNI_PLUGIN" "$tmp_bin"
chmod 0755 "$tmp_bin"
mv -f "$tmp_bin" "$CNI_BIN_DIR/brindle-cni"
log "installed $CNI_BIN_DIR/brindle-cni"

# 2. The kubeconfig. The CA goes in base64 (certificate-authority-data), so the file
# stands alone on the host. IPv6 service hosts need brackets in the URL.
case "$KUBERNETES_SERVICE_HOST" in
  *:*) server="https://[$KUBERNETES_SERVICE_HOST]:$KUBERNETES_SERVICE_PORT" ;;
  *) server="https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" ;;
esac
ca_data=$(base64 <"$SA_DIR/ca.crt" | tr -d '\n')
token=$(cat "$SA_DIR/token")
write_file "$CNI_NET_DIR/brindle-kubeconfig" 0600 <<EOF
# Written by brindle-node's install-cni; rewritten every time brindle-node starts.
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: $server
      certificate-authority-data: "$ca_data"
users:
  - name: brindle-cni
    user:
      token: "$token"
contexts:
  - name: brindle-cni-context
    context:
      cluster: local
      user: brindle-cni
current-context: brindle-cni-context
EOF
log "wrote $CNI_NET_DIR/brindle-kubeconfig (server $server)"

# 3. The network configuration (examples/cni/10-brindle.conflist in Kubernetes mode).
# Readable by all: the runtime reads it, and it holds no secret.
mtu_line=""
[ -z "$CNI_MTU" ] || mtu_line="
      \"mtu\": $CNI_MTU,"
conf=$(cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "plugins": [
    {
      "type": "brindle-cni",
      "datastore_type": "kubernetes",
      "nodename": "__NODENAME__",
      "stateDir": "$STATE_DIR",
      "kubernetes": {
        "kubeconfig": "$CNI_NET_DIR_HOST/brindle-kubeconfig"
      },$mtu_line
      "log_level": "$CNI_LOG_LEVEL"
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true },
      "snat": true
    }
  ]
}
EOF
)
printf '%s\n' "$conf" | sed "s/__NODENAME__/$NODENAME/" | write_file "$CNI_NET_DIR/$CNI_CONF_NAME" 0644
log "wrote $CNI_NET_DIR/$CNI_CONF_NAME for node $NODENAME"
