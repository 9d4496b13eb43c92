#!/usr/bin/env python3
"""Offline checks of Brindle's Kubernetes packaging, for scripts/validate-manifests.sh.

    validate_crs.py crds DIR            the CRDs in DIR: Calico's names, structural schemas
    validate_crs.py crs DIR FILE...     Calico objects in FILEs against the CRD schemas in DIR
    validate_crs.py kustomization DIR   DIR/kustomization.yaml lists existing files, and
                                        every manifest in DIR is listed or known to be left out
    validate_crs.py k8s-validate-output STATUS FILE...
                                        judges kubernetes-validate's output (standard input)
                                        and exit STATUS for FILEs

Every check prints one line, "PASS <what>" or "FAIL <what>: <why>", and the exit status is
non-zero when any failed. Needs PyYAML and jsonschema (from check-jsonschema's venv).

Custom resources are checked as the API server would with kubectl's default strict field
validation: types, enums, patterns, ranges, formats, required fields, and no field the
schema does not know. projectcalico.org/v3 objects (Brindle's file mode) are checked as
the crd.projectcalico.org/v1 objects they stand for; the few file-mode differences are
converted explicitly (see to_v1) and printed.
"""

import copy
import ipaddress
import os
import re
import sys
from datetime import datetime

import jsonschema
import yaml

GROUP = "crd.projectcalico.org"

# Calico's names, written out independently of gen-crds.py so that a slip there shows.
# kind: (plural, namespaced)
CALICO_KINDS = {
    "BGPConfiguration": ("bgpconfigurations", False),
    "BGPPeer": ("bgppeers", False),
    "BGPFilter": ("bgpfilters", False),
    "IPPool": ("ippools", False),
    "IPReservation": ("ipreservations", False),
    "BlockAffinity": ("blockaffinities", False),
    "IPAMBlock": ("ipamblocks", False),
    "IPAMHandle": ("ipamhandles", False),
    "IPAMConfig": ("ipamconfigs", False),
    "ClusterInformation": ("clusterinformations", False),
    "FelixConfiguration": ("felixconfigurations", False),
    "KubeControllersConfiguration": ("kubecontrollersconfigurations", False),
    "NetworkPolicy": ("networkpolicies", True),
    "GlobalNetworkPolicy": ("globalnetworkpolicies", False),
    "NetworkSet": ("networksets", True),
    "GlobalNetworkSet": ("globalnetworksets", False),
    "HostEndpoint": ("hostendpoints", False),
    "Tier": ("tiers", False),
}

failures = 0


def report(ok, what, why=""):
    global failures
    if ok:
        print("PASS %s" % what)
    else:
        failures += 1
        print("FAIL %s: %s" % (what, why))


class K8sLoader(yaml.SafeLoader):
    """PyYAML's YAML 1.1 resolution, less base-60 numbers: kubectl's YAML parser reads
    an unquoted 64512:100 (a BGP community) as a string, PyYAML as the integer 232320100."""


K8sLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers
         if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
K8sLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))
K8sLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
               r"|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=K8sLoader) if d is not None]


def prune_nulls(obj, node):
    """Drop null fields the schema does not mark nullable, as the API server does."""
    if isinstance(obj, dict) and isinstance(node, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for k in list(obj):
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if obj[k] is None and not (sub or {}).get("nullable"):
                del obj[k]
            elif sub is not None:
                prune_nulls(obj[k], sub)
    elif isinstance(obj, list) and isinstance(node, dict) and isinstance(node.get("items"), dict):
        for x in obj:
            prune_nulls(x, node["items"])


# ---------------------------------------------------------------------------------------
# Structural schemas (what the API server demands of a CRD's schema)

TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def structural_errors(node, path):
    errs = []
    if not isinstance(node, dict):
        return ["%s: not a schema object" % path]
    ios = node.get("x-kubernetes-int-or-string") is True
    pres = node.get("x-kubernetes-preserve-unknown-fields") is True
    t = node.get("type")
    if ios:
        if t is not None:
            errs.append("%s: x-kubernetes-int-or-string with a type" % path)
        any_of = node.get("anyOf")
        if any_of is not None and any_of != [{"type": "integer"}, {"type": "string"}]:
            errs.append("%s: int-or-string anyOf must be integer, string" % path)
    elif t is None:
        if not pres:
            errs.append("%s: no type" % path)
    elif t not in TYPES:
        errs.append("%s: unknown type %r" % (path, t))
    if "properties" in node and "additionalProperties" in node:
        errs.append("%s: both properties and additionalProperties" % path)
    if t == "array" and not isinstance(node.get("items"), dict):
        errs.append("%s: array without items" % path)
    if t not in (None, "object") and ("properties" in node or "additionalProperties" in node):
        errs.append("%s: properties on a %s" % (path, t))
    for r in node.get("required", []):
        if r not in node.get("properties", {}):
            errs.append("%s: required %r is not a property" % (path, r))
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except re.error as e:
            errs.append("%s: bad pattern: %s" % (path, e))
            return errs
    py = {"string": str, "integer": int, "number": (int, float), "boolean": bool}.get(t)
    for v in node.get("enum", []):
        if py and not (isinstance(v, py) and not (t == "integer" and isinstance(v, bool))):
            errs.append("%s: enum value %r is not a %s" % (path, v, t))
    if "default" in node:
        try:
            validator(node).validate(node["default"])
        except jsonschema.ValidationError as e:
            errs.append("%s: default %r is invalid: %s" % (path, node["default"], e.message))
    for k, sub in node.get("properties", {}).items():
        errs += structural_errors(sub, "%s.%s" % (path, k))
    if isinstance(node.get("additionalProperties"), dict):
        errs += structural_errors(node["additionalProperties"], path + ".*")
    if isinstance(node.get("items"), dict):
        errs += structural_errors(node["items"], path + "[]")
    return errs


def check_crds(crd_dir):
    files = sorted(f for f in os.listdir(crd_dir) if f.endswith(".yaml"))
    seen = set()
    for name in files:
        path = os.path.join(crd_dir, name)
        what = "crd-structure %s" % path
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            report(False, what, "YAML: %s" % e)
            continue
        if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
            report(False, what, "expected exactly one CustomResourceDefinition")
            continue
        crd = docs[0]
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        kind = names.get("kind")
        errs = []
        if kind not in CALICO_KINDS:
            errs.append("kind %r is not one of Calico's" % kind)
        else:
            plural, namespaced = CALICO_KINDS[kind]
            seen.add(kind)
            want = {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": kind + "List",
            }
            for k, v in want.items():
                if names.get(k) != v:
                    errs.append("names.%s is %r, Calico's is %r" % (k, names.get(k), v))
            if crd.get("metadata", {}).get("name") != "%s.%s" % (plural, GROUP):
                errs.append("metadata.name must be %s.%s" % (plural, GROUP))
            if spec.get("scope") != ("Namespaced" if namespaced else "Cluster"):
                errs.append("scope must be %s" % ("Namespaced" if namespaced else "Cluster"))
            if name != plural + ".yaml":
                errs.append("file should be named %s.yaml" % plural)
        if spec.get("group") != GROUP:
            errs.append("group must be %s" % GROUP)
        versions = spec.get("versions", [])
        if [v.get("name") for v in versions] != ["v1"]:
            errs.append("versions must be exactly [v1]")
        for v in versions:
            if not (v.get("served") and v.get("storage")):
                errs.append("v1 must be served and the storage version")
            root = v.get("schema", {}).get("openAPIV3Schema")
            if not isinstance(root, dict):
                errs.append("no openAPIV3Schema")
                continue
            if root.get("type") != "object":
                errs.append("openAPIV3Schema.type must be object")
            meta = root.get("properties", {}).get("metadata")
            if meta != {"type": "object"}:
                errs.append("metadata may only be {type: object}")
            if root.get("properties", {}).get("spec", {}).get("type") != "object":
                errs.append("spec must be an object")
            errs += structural_errors(root, "openAPIV3Schema")
        if errs:
            report(False, what, "; ".join(errs[:5]) + (" (+%d more)" % (len(errs) - 5) if len(errs) > 5 else ""))
        else:
            n = count_fields(root.get("properties", {}).get("spec", {}))
            report(True, "%s (%s, %d spec fields)" % (what, kind, n))
    missing = sorted(set(CALICO_KINDS) - seen)
    report(not missing, "crd-set %s (all %d Calico kinds)" % (crd_dir, len(CALICO_KINDS)),
           "missing: %s" % ", ".join(missing))


def count_fields(node):
    n = 0
    for sub in node.get("properties", {}).values():
        n += 1 + count_fields(sub)
    if isinstance(node.get("items"), dict):
        n += count_fields(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        n += count_fields(node["additionalProperties"])
    return n


# ---------------------------------------------------------------------------------------
# Custom resources against the CRD schemas

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("cidr", raises=ValueError)
def _cidr(v):
    if not isinstance(v, str):
        return True
    ipaddress.ip_network(v, strict=False)  # Go's net.ParseCIDR: host bits allowed
    if "/" not in v:
        raise ValueError("no prefix length")
    return True


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(v):
    if not isinstance(v, str):
        return True
    datetime.fromisoformat(v.replace("Z", "+00:00"))
    return True


DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 63},
        "labels": STRMAP,
        "annotations": STRMAP,
        "generateName": {"type": "string"},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {},
        "deletionTimestamp": {},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array"},
        "managedFields": {"type": "array"},
    },
}


def to_json_schema(node):
    """An OpenAPI v3 CRD schema node as JSON Schema, with strict field validation."""
    out = {}
    for k in ("enum", "pattern", "minimum", "maximum", "minLength", "maxLength",
              "minItems", "maxItems", "minProperties", "maxProperties", "format",
              "required"):
        if k in node:
            out[k] = copy.deepcopy(node[k])
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
        if node.get("nullable") and "enum" in out:
            out["enum"] = out["enum"] + [None]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    elif (node.get("type") == "object" and "properties" in node
          and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"])
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def validator(openapi_node):
    return jsonschema.Draft7Validator(to_json_schema(openapi_node), format_checker=FORMATS)


def load_crd_validators(crd_dir):
    out = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith(".yaml"):
            continue
        for crd in load_docs(os.path.join(crd_dir, name)):
            spec = crd["spec"]
            for v in spec["versions"]:
                root = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                js = to_json_schema(root)
                js["properties"]["metadata"] = OBJECT_META
                js["required"] = ["apiVersion", "kind", "metadata"]
                js["additionalProperties"] = False
                key = ("%s/%s" % (spec["group"], v["name"]), spec["names"]["kind"])
                out[key] = (
                    jsonschema.Draft7Validator(js, format_checker=FORMATS),
                    spec["scope"] == "Namespaced",
                    root,
                )
    return out


def to_v1(doc):
    """A projectcalico.org/v3 object (Brindle's file mode) as the crd.projectcalico.org/v1
    object it stands for. Returns (object or None, notes)."""
    notes = []
    kind = doc.get("kind")
    if kind == "Node":
        # Calico's Node is the Kubernetes Node (its annotations) in Kubernetes mode.
        return None, ["Node has no CRD (the Kubernetes Node stands for it)"]
    v1 = copy.deepcopy(doc)
    v1["apiVersion"] = GROUP + "/v1"
    if kind == "IPAMConfiguration":
        v1["kind"] = "IPAMConfig"  # the v3 kind's storage name
    spec = v1.get("spec")
    if not isinstance(spec, dict):
        return v1, notes
    if kind in ("BGPPeer", "BGPConfiguration"):
        for field in ("password", "nodeMeshPassword"):
            pw = spec.get(field)
            if isinstance(pw, dict) and "value" in pw:
                # File mode's literal password; Kubernetes mode uses secretKeyRef.
                del pw["value"]
                notes.append("%s.spec.%s.value is file mode only" % (kind, field))
                if not pw:
                    del spec[field]
    if kind == "BlockAffinity":
        # Brindle's file mode defaults (model/src/decode/calico.rs): state confirmed,
        # deleted false; the v1 storage format keeps deleted as a string.
        if "state" not in spec:
            spec["state"] = "confirmed"
            notes.append("BlockAffinity state defaulted to confirmed")
        d = spec.get("deleted", False)
        if isinstance(d, bool):
            spec["deleted"] = "true" if d else "false"
    return v1, notes


def check_crs(crd_dir, files):
    validators = load_crd_validators(crd_dir)
    for path in files:
        what = "cr-schema %s" % path
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            report(False, what, "YAML: %s" % e)
            continue
        checked, skipped, errs, notes = 0, 0, [], []
        for i, doc in enumerate(docs):
            api = doc.get("apiVersion", "")
            if api == "projectcalico.org/v3":
                obj, n = to_v1(doc)
                notes += n
                if obj is None:
                    skipped += 1
                    continue
            elif api.startswith(GROUP + "/"):
                obj = doc
            else:
                continue  # not a Calico object: kubernetes-validate's business
            label = "%s/%s" % (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
            entry = validators.get((obj.get("apiVersion"), obj.get("kind")))
            if entry is None:
                errs.append("%s: no CRD for %s %s" % (label, obj.get("apiVersion"), obj.get("kind")))
                continue
            v, namespaced, root = entry
            obj = copy.deepcopy(obj)
            prune_nulls(obj, root)
            try:
                found = sorted(v.iter_errors(obj), key=lambda e: [str(p) for p in e.path])
            except re.error as e:
                found = []
                errs.append("%s: a pattern in the CRD does not compile: %s" % (label, e))
            for e in found:
                where = ".".join(str(p) for p in e.path) or "(top)"
                errs.append("%s: %s: %s" % (label, where, e.message))
            if not namespaced and "namespace" in (obj.get("metadata") or {}):
                errs.append("%s: metadata.namespace on a cluster-scoped kind" % label)
            checked += 1
        if checked == 0 and skipped == 0 and not errs:
            report(False, what, "no Calico objects in the file")
            continue
        detail = "%d objects" % checked
        if skipped:
            detail += ", %d skipped" % skipped
        if notes:
            detail += "; " + "; ".join(sorted(set(notes)))
        if errs:
            report(False, what, "; ".join(errs[:6]) + (" (+%d more)" % (len(errs) - 6) if len(errs) > 6 else ""))
        else:
            report(True, "%s (%s)" % (what, detail))


# ---------------------------------------------------------------------------------------
# kustomization.yaml

# Manifests in examples/kubernetes that kustomization.yaml leaves out on purpose.
NOT_IN_KUSTOMIZATION = {
    # Custom resources cannot be applied together with the CRDs defining them (the API
    # has no such kind until the CRD is established); README.md applies it afterwards.
    "calico-resources.yaml",
}


def check_kustomization(kdir):
    path = os.path.join(kdir, "kustomization.yaml")
    what = "kustomization %s" % path
    try:
        docs = load_docs(path)
    except (OSError, yaml.YAMLError) as e:
        report(False, what, str(e))
        return
    errs = []
    if len(docs) != 1:
        errs.append("expected one document")
        docs = docs[:1] or [{}]
    k = docs[0]
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        errs.append("not a kustomize.config.k8s.io/v1beta1 Kustomization")
    unknown = set(k) - {"apiVersion", "kind", "resources", "namespace", "labels",
                        "commonLabels", "images", "patches"}
    if unknown:
        errs.append("unknown fields %s" % sorted(unknown))
    res = k.get("resources") or []
    if len(set(res)) != len(res):
        errs.append("a resource is listed twice")
    for r in res:
        if not os.path.isfile(os.path.join(kdir, r)):
            errs.append("%s does not exist" % r)
    listed = {os.path.normpath(r) for r in res}
    manifests = set()
    for root, _, names in os.walk(kdir):
        for n in names:
            if n.endswith(".yaml") and n != "kustomization.yaml":
                manifests.add(os.path.relpath(os.path.join(root, n), kdir))
    for m in sorted(manifests - listed - NOT_IN_KUSTOMIZATION):
        errs.append("%s is not listed" % m)
    if errs:
        report(False, what, "; ".join(errs))
    else:
        report(True, "%s (%d resources)" % (what, len(res)))


# ---------------------------------------------------------------------------------------
# kubernetes-validate's output

def judge_k8s_validate(files, output, status):
    """kubernetes-validate prints INFO (passed), ERROR, WARN (no schema) per object; it
    exits 0 when it found no schema. A missing schema is accepted only for Calico objects
    (checked against the CRDs by `crs`) and kustomize's file (checked by `kustomization`)."""
    per = {f: {"ok": 0, "err": [], "warn": []} for f in files}
    stray = []
    for line in output.splitlines():
        m = re.match(r"^(INFO|ERROR|WARN|FATAL) (\S+) (.*)$", line)
        if not m or m.group(2) not in per:
            if line.strip():
                stray.append(line.strip())
            continue
        level, f, rest = m.groups()
        if level == "INFO":
            per[f]["ok"] += 1
        elif level == "WARN":
            w = re.search(r"with api version (\S+)", rest)
            if w and (w.group(1).startswith(GROUP + "/")
                      or w.group(1).startswith("kustomize.config.k8s.io/")):
                per[f]["warn"].append(w.group(1))
            else:
                per[f]["err"].append(rest)
        else:
            per[f]["err"].append(rest)
    for f in files:
        what = "k8s-schema %s" % f
        p = per[f]
        if p["err"]:
            report(False, what, "; ".join(p["err"]))
        elif p["ok"] == 0 and not p["warn"]:
            report(False, what, "kubernetes-validate said nothing about it")
        else:
            parts = []
            if p["ok"]:
                parts.append("%d Kubernetes object(s) valid for 1.33, strict" % p["ok"])
            calico = sum(1 for a in p["warn"] if a.startswith(GROUP + "/"))
            if calico:
                parts.append("%d Calico object(s) left to the cr-schema check" % calico)
            if len(p["warn"]) > calico:
                parts.append("the Kustomization left to the kustomization check")
            detail = "; ".join(parts)
            report(True, "%s (%s)" % (what, detail))
    if stray or (status != 0 and not any(per[f]["err"] for f in files)):
        report(False, "k8s-schema run", "exit status %d; %s" % (status, " | ".join(stray[:5])))


def main(argv):
    if len(argv) >= 2 and argv[0] == "crds":
        check_crds(argv[1])
    elif len(argv) >= 3 and argv[0] == "crs":
        check_crs(argv[1], argv[2:])
    elif len(argv) == 2 and argv[0] == "kustomization":
        check_kustomization(argv[1])
    elif len(argv) >= 3 and argv[0] == "k8s-validate-output":
        judge_k8s_validate(argv[2:], sys.stdin.read(), int(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
