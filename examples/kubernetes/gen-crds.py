#!/usr/bin/env python3
"""Write the CustomResourceDefinitions in examples/kubernetes/crds/.

Brindle in Kubernetes mode reads and writes Calico's own resources: the CRD group
`crd.projectcalico.org`, version `v1`, the group calico-node itself uses. These CRDs are
for clusters that never had Calico; a cluster that had Calico keeps Calico's CRDs.

Each kind below is a compact table of its spec fields (the JSON names of Calico's Go types,
api/pkg/apis/projectcalico/v3 and, for the IPAM kinds, libcalico-go's internal API), with
the enum values, ranges and required fields Calico validates. This script turns the tables
into structural OpenAPI v3 schemas and writes one YAML file per kind.

    python3 examples/kubernetes/gen-crds.py              # rewrite examples/kubernetes/crds/
    python3 examples/kubernetes/gen-crds.py --out DIR    # write elsewhere (the validator diffs)

Python 3 standard library only. scripts/validate-manifests.sh fails when the committed
files differ from what this script writes, so edit the tables here, never the YAML.
"""

import argparse
import json
import os
import re
import sys

GROUP = "crd.projectcalico.org"
VERSION = "v1"

# ---------------------------------------------------------------------------------------
# Schema builders. Each returns a plain dict (an OpenAPI v3 schema node).


def S(enum=None, pattern=None, max_len=None, fmt=None, default=None):
    """A string."""
    s = {"type": "string"}
    if fmt:
        s["format"] = fmt
    if enum is not None:
        s["enum"] = list(enum)
    if pattern:
        s["pattern"] = pattern
    if max_len is not None:
        s["maxLength"] = max_len
    if default is not None:
        s["default"] = default
    return s


def E(*values, default=None):
    """A string restricted to values (Calico's +kubebuilder:validation:Enum)."""
    return S(enum=values, default=default)


def EI(*values, default=None):
    """A string matching values case-insensitively, or empty (Calico's Felix `(?i)` patterns).
    The flag comes first so that Go (the API server) and Python read the pattern alike."""
    return S(pattern="(?i)^(%s)?$" % "|".join(values), default=default)


def I(minimum=None, maximum=None, default=None, nullable=False, enum=None):
    """An integer."""
    s = {"type": "integer"}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    if enum is not None:
        s["enum"] = list(enum)
    if nullable:
        s["nullable"] = True
    if default is not None:
        s["default"] = default
    return s


def B(default=None):
    """A boolean."""
    s = {"type": "boolean"}
    if default is not None:
        s["default"] = default
    return s


def F():
    """A number (Calico's float64 `order`)."""
    return {"type": "number"}


def IOS():
    """An integer or a string (Calico's numorstring.Port, Protocol, DSCP)."""
    return {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }


def L(items, min_items=None, max_items=None, list_type=None):
    """An array."""
    s = {"type": "array", "items": items}
    if min_items is not None:
        s["minItems"] = min_items
    if max_items is not None:
        s["maxItems"] = max_items
    if list_type:
        s["x-kubernetes-list-type"] = list_type
    return s


def O(props, required=(), min_props=None, max_props=None):
    """An object with known properties (any other property is rejected)."""
    for r in required:
        if r not in props:
            raise SystemExit("gen-crds: required field %r is not a property" % r)
    s = {"type": "object", "properties": {k: props[k] for k in sorted(props)}}
    if required:
        s["required"] = sorted(required)
    if min_props is not None:
        s["minProperties"] = min_props
    if max_props is not None:
        s["maxProperties"] = max_props
    return s


def M(values):
    """A map from strings to values."""
    return {"type": "object", "additionalProperties": values}


def ANY():
    """An object kept as it is (used only for status, which Brindle never writes)."""
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


# Go's time.ParseDuration syntax (metav1.Duration serialises as "1m30s").
DUR_PATTERN = "^[-+]?(0|(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$"


def DUR():
    return S(pattern=DUR_PATTERN)


CIDR = S(fmt="cidr")
ASN = I(0, 4294967295)  # numorstring.ASNumber: a 32-bit AS number
PRIORITY = I(1, 2147483646)  # route priorities (kernel metric)
SELECTOR = S(max_len=1024)  # Calico selector expressions
NAME = S(max_len=253)
# A standard (aa:nn) or large (aa:nn:mm) BGP community.
COMMUNITY = S(
    max_len=32, pattern="^([0-9]{1,5}:[0-9]{1,5}|[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10})$"
)

# BGPPassword: a reference to a key of a Secret in the calico-node (here brindle-node)
# namespace.
PASSWORD = O(
    {
        "secretKeyRef": O(
            {"name": S(default=""), "key": S(), "optional": B()}, required=["key"]
        )
    }
)

# ---------------------------------------------------------------------------------------
# BGP


def bgp_filter_rule(v6):
    bits = 128 if v6 else 32
    return O(
        {
            "cidr": S(fmt="cidr", max_len=43 if v6 else 18),
            "prefixLength": O({"min": I(0, bits), "max": I(0, bits)}),
            "source": E("RemotePeers"),
            "interface": S(max_len=15),
            "matchOperator": E("Equal", "NotEqual", "In", "NotIn"),
            "peerType": E("eBGP", "iBGP"),
            "communities": O(
                {"values": L(COMMUNITY, min_items=1, max_items=1)}, required=["values"]
            ),
            "asPathPrefix": L(ASN),
            "priority": PRIORITY,
            "action": E("Accept", "Reject"),
            "operations": L(
                O(
                    {
                        "addCommunity": O({"value": COMMUNITY}, required=["value"]),
                        "prependASPath": O(
                            {"prefix": L(ASN, min_items=1, max_items=10)},
                            required=["prefix"],
                        ),
                        "setPriority": O({"value": PRIORITY}, required=["value"]),
                    },
                    min_props=1,
                    max_props=1,
                ),
                min_items=1,
                max_items=10,
            ),
        },
        required=["action"],
    )


def cidr_blocks():
    return L(O({"cidr": CIDR}))


BGP_CONFIGURATION = O(
    {
        "logSeverityScreen": EI(
            "Trace", "Debug", "Info", "Warning", "Error", "Fatal", default="Info"
        ),
        "nodeToNodeMeshEnabled": B(),
        "asNumber": ASN,
        "serviceLoadBalancerIPs": cidr_blocks(),
        "serviceExternalIPs": cidr_blocks(),
        "serviceClusterIPs": cidr_blocks(),
        "serviceLoadBalancerAggregation": E("Enabled", "Disabled", default="Enabled"),
        "communities": L(
            O(
                {
                    "name": NAME,
                    "value": S(max_len=40, pattern="^(\\d+):(\\d+)$|^(\\d+):(\\d+):(\\d+)$"),
                },
                required=["name", "value"],
            ),
            max_items=500,
        ),
        "prefixAdvertisements": L(
            O(
                {"cidr": CIDR, "communities": L(S(), max_items=50)},
                required=["cidr", "communities"],
            ),
            max_items=500,
        ),
        "listenPort": I(1, 65535),
        "nodeMeshPassword": PASSWORD,
        "nodeMeshMaxRestartTime": DUR(),
        "bindMode": E("None", "NodeIP"),
        "ignoredInterfaces": L(S()),
        "localWorkloadPeeringIPV4": S(),
        "localWorkloadPeeringIPV6": S(),
        "programClusterRoutes": E(
            "Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly"
        ),
        "ipv4NormalRoutePriority": PRIORITY,
        "ipv6NormalRoutePriority": PRIORITY,
    }
)

BGP_PEER = O(
    {
        "node": NAME,
        "nodeSelector": SELECTOR,
        "peerIP": S(max_len=64),  # an address, optionally with :port ([v6]:port)
        "asNumber": ASN,
        "localASNumber": ASN,
        "peerSelector": SELECTOR,
        "keepOriginalNextHop": B(),
        "nextHopMode": E("Auto", "Self", "Keep"),
        "password": PASSWORD,
        "sourceAddress": E("UseNodeIP", "None"),
        "maxRestartTime": DUR(),
        "keepaliveTime": DUR(),
        "numAllowedLocalASNumbers": I(0),
        "ttlSecurity": I(0, 255),
        "reachableBy": S(max_len=64),
        "filters": L(S()),  # BGPFilter names
        "localWorkloadSelector": SELECTOR,
        "reversePeering": E("Auto", "Manual"),
    }
)

BGP_FILTER = O(
    {
        "exportV4": L(bgp_filter_rule(False)),
        "importV4": L(bgp_filter_rule(False)),
        "exportV6": L(bgp_filter_rule(True)),
        "importV6": L(bgp_filter_rule(True)),
    }
)

# ---------------------------------------------------------------------------------------
# IP pools and IPAM. The IPAM kinds are libcalico-go's internal API (what calico-node and
# the Calico CNI plugin store), not the projectcalico.org/v3 shapes: BlockAffinity's
# `deleted` is a string ("true"/"false") there, and required fields are Calico's.

IP_POOL = O(
    {
        "cidr": S(fmt="cidr", max_len=48),
        "vxlanMode": E("Never", "Always", "CrossSubnet"),
        "ipipMode": E("Never", "Always", "CrossSubnet"),
        "natOutgoing": B(),
        "disabled": B(),
        "disableBGPExport": B(),
        "blockSize": I(0, 128),
        "nodeSelector": S(max_len=1024, default="all()"),
        "namespaceSelector": SELECTOR,
        "allowedUses": L(
            E("Workload", "Tunnel", "LoadBalancer"), max_items=10, list_type="set"
        ),
        "assignmentMode": E("Automatic", "Manual", default="Automatic"),
    },
    required=["cidr"],
)

IP_RESERVATION = O({"reservedCIDRs": L(CIDR, list_type="set")})

BLOCK_AFFINITY = O(
    {
        "state": E("", "confirmed", "pending", "pendingDeletion"),
        "node": S(),
        "type": S(),
        "cidr": CIDR,
        "deleted": S(),  # "true" / "false": a string in Calico's storage format
    },
    required=["state", "node", "cidr", "deleted"],
)

IPAM_BLOCK = O(
    {
        "cidr": CIDR,
        "affinity": S(pattern="^(host|virtual):[a-zA-Z0-9\\.\\-_]+$"),
        "affinityClaimTime": S(fmt="date-time"),
        # One entry per address: null when free, else an index into attributes.
        "allocations": L(I(nullable=True)),
        "unallocated": L(I()),
        "attributes": L(
            O(
                {
                    "handle_id": S(),
                    "secondary": M(S()),
                    "alternateOwnerAttrs": M(S()),
                    "releasedAt": S(fmt="date-time"),
                }
            )
        ),
        "sequenceNumber": I(0, default=0),
        "sequenceNumberForAllocation": M(I(0)),
        "deleted": B(),
        "strictAffinity": B(),
    },
    required=["cidr", "allocations", "unallocated", "attributes", "strictAffinity"],
)

IPAM_HANDLE = O(
    {"handleID": S(), "block": M(I()), "deleted": B()}, required=["handleID", "block"]
)

IPAM_CONFIG = O(
    {
        "strictAffinity": B(),
        "autoAllocateBlocks": B(),
        "maxBlocksPerHost": I(0, 2147483647),
        "kubeVirtVMAddressPersistence": E("Enabled", "Disabled"),
        "ipCooldownSeconds": I(0, 1200),
    },
    required=["strictAffinity", "autoAllocateBlocks"],
)

# ---------------------------------------------------------------------------------------
# Cluster-wide configuration

CLUSTER_INFORMATION = O(
    {
        "clusterGUID": S(),
        "clusterType": S(),
        "calicoVersion": S(),
        "datastoreReady": B(),
        "variant": S(),
    }
)

# FelixConfiguration: one line per field, "jsonName type [min..max]". Types: str, int,
# bool, dur (Go duration), strs (list of strings), map (string to string), port
# (int-or-string), ports (list of them), intstr, "enum A B" (exact values), "enumi A B"
# (Felix's case-insensitive values, empty allowed), "pat REGEX", or a nested struct below.
FELIX_FIELDS = r"""
nodeSelector                               str
useInternalDataplaneDriver                 bool
dataplaneDriver                            str
dataplaneWatchdogTimeout                   dur
ipv6Support                                bool
routeRefreshInterval                       dur
interfaceRefreshInterval                   dur
iptablesRefreshInterval                    dur
iptablesPostWriteCheckInterval             dur
iptablesLockProbeInterval                  dur
featureDetectOverride                      pat ^([a-zA-Z0-9-_]+=(true|false|),)*([a-zA-Z0-9-_]+=(true|false|))?$
featureGates                               pat ^([a-zA-Z0-9-_]+=([^=]+),)*([a-zA-Z0-9-_]+=([^=]+))?$
ipsetsRefreshInterval                      dur
maxIpsetSize                               int
iptablesBackend                            enum Legacy NFT Auto
xdpRefreshInterval                         dur
netlinkTimeout                             dur
metadataAddr                               str
metadataPort                               int
openstackRegion                            str
interfacePrefix                            str
interfaceExclude                           str
chainInsertMode                            enumi Insert Append
defaultEndpointToHostAction                enumi Drop Accept Return
iptablesFilterAllowAction                  enumi Accept Return
iptablesMangleAllowAction                  enumi Accept Return
iptablesFilterDenyAction                   enumi Drop Reject
logPrefix                                  pat ^([a-zA-Z0-9%: /_-])*$
logActionRateLimit                         pat ^[1-9]\d{0,3}/(?:second|minute|hour|day)$
logActionRateLimitBurst                    int 0..9999
logFilePath                                str
logSeverityFile                            enumi Trace Debug Info Warning Error Fatal
logSeverityScreen                          enumi Trace Debug Info Warning Error Fatal
logSeveritySys                             enumi Trace Debug Info Warning Error Fatal
logDebugFilenameRegex                      str
ipipEnabled                                bool
ipipMTU                                    int
vxlanEnabled                               bool
vxlanMTU                                   int
vxlanMTUV6                                 int
vxlanPort                                  int
vxlanVNI                                   int
allowVXLANPacketsFromWorkloads             bool
allowIPIPPacketsFromWorkloads              bool
reportingInterval                          dur
reportingTTL                               dur
endpointReportingEnabled                   bool
endpointReportingDelay                     dur
endpointStatusPathPrefix                   str
iptablesMarkMask                           int 0..4294967295
disableConntrackInvalidCheck               bool
healthEnabled                              bool
healthHost                                 str
healthPort                                 int
healthTimeoutOverrides                     HealthTimeoutOverrides
prometheusMetricsEnabled                   bool
prometheusMetricsHost                      str
prometheusMetricsPort                      int
prometheusGoMetricsEnabled                 bool
prometheusProcessMetricsEnabled            bool
prometheusWireGuardMetricsEnabled          bool
prometheusMetricsCAFile                    str
prometheusMetricsCertFile                  str
prometheusMetricsKeyFile                   str
prometheusMetricsClientAuth                enum RequireAndVerifyClientCert RequireAnyClientCert VerifyClientCertIfGiven NoClientCert
failsafeInboundHostPorts                   ProtoPorts
failsafeOutboundHostPorts                  ProtoPorts
kubeNodePortRanges                         ports
policySyncPathPrefix                       str
usageReportingEnabled                      bool
usageReportingInitialDelay                 dur
usageReportingInterval                     dur
natPortRange                               port
natOutgoingAddress                         str
natOutgoingExclusions                      enum IPPoolsOnly IPPoolsAndHostIPs
deviceRouteSourceAddress                   str
deviceRouteSourceAddressIPv6               str
deviceRouteProtocol                        int
removeExternalRoutes                       bool
programClusterRoutes                       enum Enabled Disabled EnabledIPIPOnly EnabledNoEncapOnly
ipForwarding                               enum Enabled Disabled
externalNodesList                          strs
debugMemoryProfilePath                     str
debugDisableLogDropping                    bool
debugSimulateCalcGraphHangAfter            dur
debugSimulateDataplaneHangAfter            dur
debugSimulateDataplaneApplyDelay           dur
debugHost                                  str
debugPort                                  int 0..65535
iptablesNATOutgoingInterfaceFilter         str
sidecarAccelerationEnabled                 bool
xdpEnabled                                 bool
genericXDPEnabled                          bool
nftablesMode                               enum Disabled Enabled Auto
nftablesFlowTableOffload                   enum All Disabled
nftablesFlowTableDataIfacePattern          str
nftablesRefreshInterval                    dur
nftablesFilterAllowAction                  enumi Accept Return
nftablesMangleAllowAction                  enumi Accept Return
nftablesFilterDenyAction                   enumi Drop Reject
nftablesMarkMask                           int 0..4294967295
bpfEnabled                                 bool
bpfOverlayHostSourceIP                     enum TunnelAddress HostAddress
bpfDisableUnprivileged                     bool
bpfJITHardening                            enum Auto Strict
bpfLogLevel                                enumi Off Info Debug
bpfConntrackLogLevel                       enum Off Debug
bpfConntrackMode                           enum Auto Userspace BPFProgram
bpfConntrackTimeouts                       BPFConntrackTimeouts
bpfIPFragTimeout                           dur
bpfLogFilters                              map
bpfCTLBLogFilter                           str
bpfDataIfacePattern                        str
bpfL3IfacePattern                          str
bpfConnectTimeLoadBalancingEnabled         bool
bpfConnectTimeLoadBalancing                enum TCP Enabled Disabled
bpfHostNetworkedNATWithoutCTLB             enum Enabled Disabled
bpfExternalServiceMode                     enumi Tunnel DSR
bpfDSROptoutCIDRs                          strs
bpfExtToServiceConnmark                    int 0..4294967295
bpfKubeProxyIptablesCleanupEnabled         bool
bpfKubeProxyMinSyncPeriod                  dur
bpfKubeProxyHealthzPort                    int 0..65535
bpfPSNATPorts                              port
bpfMapSizeNATFrontend                      int
bpfMapSizeNATBackend                       int
bpfMapSizeNATAffinity                      int
bpfMapSizeRoute                            int
bpfMapSizeConntrack                        int
bpfMapSizePerCpuConntrack                  int
bpfMapSizeConntrackScaling                 enumi Disabled DoubleIfFull
bpfMapSizeConntrackCleanupQueue            int 1..
bpfMapSizeIPSets                           int
bpfMapSizeIfState                          int
bpfHostConntrackBypass                     bool
bpfIPFragmentReassemblyEnabled             bool
bpfEnforceRPF                              enumi Disabled Strict Loose
bpfPolicyDebugEnabled                      bool
bpfForceTrackPacketsFromIfaces             strs
bpfDisableGROForIfaces                     str
bpfExcludeCIDRsFromNAT                     strs
bpfExportBufferSizeMB                      int
istioAmbientMode                           enum Enabled Disabled
istioDSCPMark                              intstr
cgroupV2Path                               str
flowLogsPolicyEvaluationMode               enum None Continuous
bpfRedirectToPeer                          enum Enabled Disabled
bpfAttachType                              enum TC TCX Netkit
flowLogsFlushInterval                      dur
flowLogsCollectorDebugTrace                bool
flowLogsGoldmaneServer                     str
flowLogsLocalReporter                      enum Disabled Enabled
bpfProfiling                               enum Enabled Disabled
routeSource                                enumi WorkloadIPs CalicoIPAM
routeTableRanges                           RouteTableRanges
routeTableRange                            RouteTableRange
routeSyncDisabled                          bool
ipv4NormalRoutePriority                    int 1..2147483646
ipv4ElevatedRoutePriority                  int 1..2147483646
ipv6NormalRoutePriority                    int 1..2147483646
ipv6ElevatedRoutePriority                  int 1..2147483646
liveMigrationRouteConvergenceTime          dur
wireguardEnabled                           bool
wireguardEnabledV6                         bool
wireguardThreadingEnabled                  bool
wireguardListeningPort                     int 1..65535
wireguardListeningPortV6                   int 1..65535
wireguardRoutingRulePriority               int 1..32765
wireguardInterfaceName                     str
wireguardInterfaceNameV6                   str
wireguardMTU                               int
wireguardMTUV6                             int
wireguardHostEncryptionEnabled             bool
wireguardKeepAlive                         dur
awsSrcDstCheck                             enum DoNothing Enable Disable
serviceLoopPrevention                      enumi Drop Reject Disabled
workloadSourceSpoofing                     enumi Disabled Any
mtuIfacePattern                            str
floatingIPs                                enum Enabled Disabled
localSubnetL2Reachability                  enum Disabled PodsAndLoadBalancers
localSubnetL2ReachabilityRefreshInterval   dur
windowsManageFirewallRules                 enum Enabled Disabled
goGCThreshold                              int -1..
goMemoryLimitMB                            int -1..
goMaxProcs                                 int -1..
requireMTUFile                             bool
bpfMaglevMaxEndpointsPerService            int 1..3000
bpfMaglevMaxServices                       int 1..3000
"""

_CT_TIMEOUT = S(pattern="^(([0-9]*(\\.[0-9]*)?(ms|s|h|m|us)+)+|Auto)$")
_ROUTE_TABLE_RANGE = O({"min": I(), "max": I()}, required=["min", "max"])
FELIX_STRUCTS = {
    "HealthTimeoutOverrides": L(
        O({"name": S(), "timeout": DUR()}, required=["name", "timeout"])
    ),
    "ProtoPorts": L(
        O({"protocol": S(), "port": I(0, 65535), "net": S()}, required=["port"])
    ),
    "BPFConntrackTimeouts": O(
        {
            k: _CT_TIMEOUT
            for k in (
                "creationGracePeriod",
                "tcpSynSent",
                "tcpEstablished",
                "tcpFinsSeen",
                "tcpResetSeen",
                "udpTimeout",
                "genericTimeout",
                "icmpTimeout",
            )
        }
    ),
    "RouteTableRanges": L(_ROUTE_TABLE_RANGE),
    "RouteTableRange": _ROUTE_TABLE_RANGE,
}


def parse_field_table(text, structs):
    props = {}
    for line in text.strip().splitlines():
        name, spec = line.split(None, 1)
        words = spec.split()
        kind = words[0]
        rng = None
        if len(words) > 1 and re.fullmatch(r"-?\d*\.\.-?\d*", words[-1]):
            lo, hi = words[-1].split("..")
            rng = (int(lo) if lo else None, int(hi) if hi else None)
            words = words[:-1]
        if kind == "str":
            s = S()
        elif kind == "int":
            s = I(*(rng or (None, None)))
        elif kind == "bool":
            s = B()
        elif kind == "dur":
            s = DUR()
        elif kind == "strs":
            s = L(S())
        elif kind == "map":
            s = M(S())
        elif kind in ("port", "intstr"):
            s = IOS()
        elif kind == "ports":
            s = L(IOS())
        elif kind == "enum":
            s = E(*words[1:])
        elif kind == "enumi":
            s = EI(*words[1:])
        elif kind == "pat":
            s = S(pattern=spec.split(None, 1)[1])
        elif kind in structs:
            s = structs[kind]
        else:
            raise SystemExit("gen-crds: unknown type %r for field %s" % (kind, name))
        if rng and kind != "int":
            raise SystemExit("gen-crds: a range only goes with int (%s)" % name)
        if name in props:
            raise SystemExit("gen-crds: field %s listed twice" % name)
        props[name] = s
    return O(props)


FELIX_CONFIGURATION = parse_field_table(FELIX_FIELDS, FELIX_STRUCTS)


def reconciler():
    return O({"reconcilerPeriod": DUR()})


KUBE_CONTROLLERS_CONFIGURATION = O(
    {
        "logSeverityScreen": E("None", "Debug", "Info", "Warning", "Error", "Fatal", "Panic"),
        "healthChecks": E("Enabled", "Disabled", default="Enabled"),
        "etcdV3CompactionPeriod": DUR(),
        "prometheusMetricsPort": I(0, 65535),
        "debugProfilePort": I(0, 65535),
        "controllers": O(
            {
                "node": O(
                    {
                        "reconcilerPeriod": DUR(),
                        "syncLabels": E("Enabled", "Disabled"),
                        "hostEndpoint": O(
                            {
                                "autoCreate": E("Enabled", "Disabled"),
                                "createDefaultHostEndpoint": E("Enabled", "Disabled"),
                                "templates": L(
                                    O(
                                        {
                                            "generateName": NAME,
                                            "interfaceCIDRs": L(S()),
                                            "interfacePattern": S(),
                                            "labels": M(S()),
                                            "annotations": M(S()),
                                            "nodeSelector": S(),
                                        }
                                    )
                                ),
                            }
                        ),
                        "leakGracePeriod": DUR(),
                    }
                ),
                "policy": reconciler(),
                "workloadEndpoint": reconciler(),
                "serviceAccount": reconciler(),
                "namespace": reconciler(),
                "loadBalancer": O(
                    {
                        "assignIPs": E(
                            "AllServices", "RequestedServicesOnly", default="AllServices"
                        )
                    }
                ),
                "migration": O(
                    {"policyNameMigrator": E("Disabled", "Enabled", default="Enabled")}
                ),
            }
        ),
    },
    required=["controllers"],
)

# ---------------------------------------------------------------------------------------
# Policy (read by Brindle; enforcement is not implemented yet)

ICMP = O({"type": I(0, 254), "code": I(0, 255)})
ENTITY_RULE = O(
    {
        "nets": L(S(), max_items=256),
        "selector": SELECTOR,
        "namespaceSelector": SELECTOR,
        "services": O({"name": NAME, "namespace": NAME}),
        "ports": L(IOS(), max_items=50),
        "notNets": L(S(), max_items=256),
        "notSelector": SELECTOR,
        "notPorts": L(IOS(), max_items=50),
        "serviceAccounts": O({"names": L(S()), "selector": S()}),
    }
)
RULE = O(
    {
        "action": E("Allow", "Deny", "Log", "Pass"),
        "ipVersion": I(enum=[4, 6]),
        "protocol": IOS(),
        "icmp": ICMP,
        "notProtocol": IOS(),
        "notICMP": ICMP,
        "source": ENTITY_RULE,
        "destination": ENTITY_RULE,
        "http": O(
            {
                "methods": L(S(), max_items=20),
                "paths": L(
                    O({"exact": S(max_len=1024), "prefix": S(max_len=1024)}), max_items=20
                ),
            }
        ),
        "metadata": O({"annotations": M(S())}),
    },
    required=["action"],
)


def policy_spec(global_policy):
    props = {
        "tier": S(default="default"),
        "order": F(),
        "ingress": L(RULE, max_items=1024),
        "egress": L(RULE, max_items=1024),
        "selector": SELECTOR,
        "types": L(E("Ingress", "Egress"), min_items=1, max_items=2),
        "serviceAccountSelector": SELECTOR,
        "performanceHints": L(E("AssumeNeededOnEveryNode"), list_type="set"),
    }
    if global_policy:
        props.update(
            {
                "doNotTrack": B(),
                "preDNAT": B(),
                "applyOnForward": B(),
                "namespaceSelector": SELECTOR,
            }
        )
    return O(props)


NETWORK_SET = O({"nets": L(S(), list_type="set")})

HOST_ENDPOINT = O(
    {
        "node": NAME,
        "interfaceName": S(max_len=15),
        "expectedIPs": L(S(), list_type="set"),
        "profiles": L(S(), list_type="set"),
        "ports": L(
            O(
                {"name": S(), "protocol": IOS(), "port": I(1, 65535)},
                required=["name", "protocol", "port"],
            )
        ),
    }
)

TIER = O({"order": F(), "defaultAction": E("Pass", "Deny", default="Deny")})

# ---------------------------------------------------------------------------------------
# The kinds: (kind, plural, namespaced, spec schema, has status, one-line description)

KINDS = [
    ("BGPConfiguration", "bgpconfigurations", False, BGP_CONFIGURATION, False,
     "Cluster-wide (name default) or per-node (name node.<nodename>) BGP settings."),
    ("BGPPeer", "bgppeers", False, BGP_PEER, False,
     "A BGP peer for all nodes, one node, or the nodes a selector picks."),
    ("BGPFilter", "bgpfilters", False, BGP_FILTER, False,
     "Import and export rules for BGP peers that name it."),
    ("IPPool", "ippools", False, IP_POOL, True,
     "A range of pod addresses, carved into blocks, with its encapsulation and NAT."),
    ("IPReservation", "ipreservations", False, IP_RESERVATION, False,
     "Addresses IPAM must not hand out."),
    ("BlockAffinity", "blockaffinities", False, BLOCK_AFFINITY, False,
     "IPAM: a block of addresses claimed by a node (internal, written by IPAM)."),
    ("IPAMBlock", "ipamblocks", False, IPAM_BLOCK, False,
     "IPAM: the allocations of one block (internal, written by IPAM)."),
    ("IPAMHandle", "ipamhandles", False, IPAM_HANDLE, False,
     "IPAM: the addresses held by one handle (a pod) (internal, written by IPAM)."),
    ("IPAMConfig", "ipamconfigs", False, IPAM_CONFIG, False,
     "IPAM settings (name default)."),
    ("ClusterInformation", "clusterinformations", False, CLUSTER_INFORMATION, False,
     "Cluster-wide facts (name default), written by the node agent."),
    ("FelixConfiguration", "felixconfigurations", False, FELIX_CONFIGURATION, False,
     "Dataplane settings, cluster-wide (name default) or per node (node.<nodename>)."),
    ("KubeControllersConfiguration", "kubecontrollersconfigurations", False,
     KUBE_CONTROLLERS_CONFIGURATION, True,
     "Settings of calico-kube-controllers (name default)."),
    ("NetworkPolicy", "networkpolicies", True, policy_spec(False), False,
     "Calico network policy in one namespace."),
    ("GlobalNetworkPolicy", "globalnetworkpolicies", False, policy_spec(True), False,
     "Calico network policy for the whole cluster."),
    ("NetworkSet", "networksets", True, NETWORK_SET, False,
     "A labelled set of networks in one namespace, for policy selectors."),
    ("GlobalNetworkSet", "globalnetworksets", False, NETWORK_SET, False,
     "A labelled set of networks for the whole cluster, for policy selectors."),
    ("HostEndpoint", "hostendpoints", False, HOST_ENDPOINT, False,
     "A host interface that policy applies to."),
    ("Tier", "tiers", False, TIER, True,
     "An ordered group of policies."),
]


def crd(kind, plural, namespaced, spec, has_status, description):
    props = {
        "apiVersion": S(),
        "kind": S(),
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if has_status:
        props["status"] = ANY()
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "description": description,
                "type": "object",
                "properties": {k: props[k] for k in sorted(props)},
            }
        },
    }
    if has_status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "%s.%s" % (plural, GROUP),
            "labels": {"app.kubernetes.io/part-of": "brindle"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": kind + "List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [version],
        },
    }


# ---------------------------------------------------------------------------------------
# A small YAML writer: block style, strings quoted whenever YAML could read them as
# something else, JSON-escaped (a JSON string is a valid YAML double-quoted scalar).

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./()-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        if _PLAIN.match(v) and v.lower() not in _YAML_WORDS:
            return v
        return json.dumps(v)
    raise TypeError("cannot write %r" % (v,))


def emit(v, indent=0):
    pad = "  " * indent
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            key = scalar(k)
            if isinstance(x, (dict, list)) and x:
                out.append("%s%s:" % (pad, key))
                out.extend(emit(x, indent + 1))
            elif isinstance(x, dict):
                out.append("%s%s: {}" % (pad, key))
            elif isinstance(x, list):
                out.append("%s%s: []" % (pad, key))
            else:
                out.append("%s%s: %s" % (pad, key, scalar(x)))
    elif isinstance(v, list):
        for x in v:
            if isinstance(x, dict) and x:
                inner = emit(x, indent + 1)
                out.append("%s- %s" % (pad, inner[0].lstrip()))
                out.extend(inner[1:])
            elif isinstance(x, list) and x:
                out.append("%s-" % pad)
                out.extend(emit(x, indent + 1))
            else:
                out.append("%s- %s" % (pad, scalar(x) if not isinstance(x, (dict, list))
                                       else ("{}" if isinstance(x, dict) else "[]")))
    return out


HEADER = """\
# Generated by examples/kubernetes/gen-crds.py: edit the tables there, not this file.
# Calico's %s (crd.projectcalico.org/v1), for clusters that never had Calico.
"""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "crds"), help="output directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for entry in KINDS:
        kind, plural = entry[0], entry[1]
        text = HEADER % kind + "\n".join(emit(crd(*entry))) + "\n"
        path = os.path.join(args.out, "%s.yaml" % plural)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print("gen-crds: wrote %d CRDs to %s" % (len(KINDS), args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
