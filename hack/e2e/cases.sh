# shellcheck shell=bash
# The e2e's kube-proxy behaviour cases, sourced by hack/e2e.sh; run_cases runs them on the cluster
# $current_cluster with the functions kc (kubectl for it) and the binary $BIN. Each case is what a real
# workload meets and kube-proxy gets right:
#   a) musl's resolver (A and AAAA at once from one socket) against two CoreDNS replicas: 200 lookups,
#      none failed, none slower than 1 s
#   b) a one-replica Deployment rolled (maxSurge 1, maxUnavailable 0, preStop delay) under a client
#      that keeps opening connections: none fails
#   c) a UDP client with a fixed source port keeps getting answers after its backend pod is replaced
#   d) pods reach host-network and remote Services: the API server's ClusterIP from a worker, a NodePort
#      on another node's address and on the control plane's
#   e) an 8,000-byte UDP reply through a NodePort arrives whole, on every node
# Workloads use the self-image (the kubedirect binary: `kubedirect echo` and `echo probe`); the musl
# client is a static binary (hack/e2e/resolve.c, musl-gcc from Debian's musl-tools) copied into the
# nodes and run from a hostPath.

# shellcheck source=hack/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E2E_NS=kd-e2e

# case_result NAME RC DETAIL records one case's outcome.
case_result() {
  if [ "$2" = 0 ]; then echo "ok: case $1: $3"; else echo "FAIL: case $1: $3"; case_failures+=("$1"); fi
}

# pod_outcome POD: waits for a probe pod to end; prints its phase and the summary line of its logs.
pod_outcome() {
  local pod=$1 phase i
  for i in $(seq 1 120); do
    phase=$(kc -n $E2E_NS get pod "$pod" -o jsonpath='{.status.phase}')
    case "$phase" in Succeeded | Failed) break ;; esac
    sleep 1
  done
  echo "$phase $(kc -n $E2E_NS logs "$pod" --all-containers 2>/dev/null | grep '"summary"' | tr '\n' ' ')"
}

# probe_pod NAME NODE ARGS... starts a pod on NODE running `kubedirect echo probe ARGS`.
probe_pod() {
  local name=$1 node=$2
  shift 2
  local args
  args=$(printf '"%s",' "$@")
  kc -n $E2E_NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  nodeName: $node
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
    - name: probe
      image: $self_image
      command: ["/usr/local/bin/kubedirect", "echo", "probe", ${args%,}]
EOF
}

run_cases() {
  case_failures=()
  local t0=$SECONDS
  self_image=$(e2e_agent_image)
  [ -n "$self_image" ] || { echo "FAIL: no agent DaemonSet image"; return 1; }
  local workers cp_node w1 w2
  workers=($(e2e_workers))
  cp_node=$(kc get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[0].metadata.name}')
  w1=${workers[0]} w2=${workers[1]:-${workers[0]}}
  kc create namespace $E2E_NS >/dev/null

  # the echo Deployment of b), c), d), e): one replica on the first worker
  e2e_apply_echo $E2E_NS web "$w1" "$self_image"

  # a) musl resolver against two CoreDNS replicas
  local n
  for n in $(docker ps --format '{{.Names}}' --filter "label=io.x-k8s.kind.cluster=$current_cluster"); do
    docker exec "$n" mkdir -p /opt/kd-e2e && docker cp "$resolve_bin" "$n:/opt/kd-e2e/resolve" >/dev/null
  done
  kc -n kube-system scale deployment coredns --replicas 2 >/dev/null
  kc -n kube-system rollout status deployment coredns --timeout 120s >/dev/null
  kc -n $E2E_NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: musl-dns}
spec:
  nodeName: $w2
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  volumes: [{name: bin, hostPath: {path: /opt/kd-e2e, type: Directory}}]
  containers:
    - name: resolve
      image: $self_image
      command: ["/opt/kd-e2e/resolve", "kubernetes.default", "200", "1000"]
      volumeMounts: [{name: bin, mountPath: /opt/kd-e2e}]
EOF
  local out
  out=$(pod_outcome musl-dns)
  case_result "a (musl resolver, 2 CoreDNS replicas)" "$([[ $out == Succeeded* ]] && echo 0 || echo 1)" \
    "$out $(kc -n $E2E_NS logs musl-dns 2>&1 | tail -3 | tr '\n' ' ')"

  e2e_wait_echo $E2E_NS web
  local cip np_http np_udp
  cip=$(e2e_cluster_ip $E2E_NS web)
  np_http=$(e2e_node_port $E2E_NS web http)
  np_udp=$(e2e_node_port $E2E_NS web udp)

  # d) host-network and remote Services from a pod on a worker
  local api_ip
  api_ip=$(kc get service kubernetes -o jsonpath='{.spec.clusterIP}')
  probe_pod reach-api "$w2" "tcp://$api_ip:443" --count 10
  out=$(pod_outcome reach-api)
  case_result "d1 (pod on $w2 -> API server ClusterIP $api_ip, host network on $cp_node)" "$([[ $out == Succeeded* ]] && echo 0 || echo 1)" "$out"
  probe_pod reach-np "$w2" "http://$(e2e_node_ip "$w1"):$np_http/" --count 10
  out=$(pod_outcome reach-np)
  case_result "d2 (pod on $w2 -> NodePort on $w1's address)" "$([[ $out == Succeeded* ]] && echo 0 || echo 1)" "$out"
  probe_pod reach-np-cp "$w2" "http://$(e2e_node_ip "$cp_node"):$np_http/" --count 10
  out=$(pod_outcome reach-np-cp)
  case_result "d3 (pod on $w2 -> NodePort on $cp_node's address)" "$([[ $out == Succeeded* ]] && echo 0 || echo 1)" "$out"

  # e) an 8,000-byte UDP reply through the NodePort of every node, from this machine
  local rc=0 detail=""
  for n in $(kc get nodes -o jsonpath='{.items[*].metadata.name}'); do
    if ! o=$("$BIN" echo probe "udp://$(e2e_node_ip "$n"):$np_udp" --size 8000 --count 3 --timeout 2s 2>&1); then
      rc=1
      detail+="$n: $(echo "$o" | grep -m1 '"err"' | cut -c1-200) "
    else
      detail+="$n: whole; "
    fi
  done
  case_result "e (8000-byte UDP reply through NodePort $np_udp)" $rc "$detail"

  # b) one-replica rollout under a client opening a connection every 50 ms
  probe_pod roll-client "$w2" "http://$cip:8080/" --count 400 --interval 50ms --timeout 2s
  kc -n $E2E_NS wait --for=condition=Ready pod/roll-client --timeout 60s >/dev/null
  sleep 2
  kc -n $E2E_NS rollout restart deployment web >/dev/null
  e2e_wait_echo $E2E_NS web
  out=$(pod_outcome roll-client)
  case_result "b (rollout of one replica under load)" "$([[ $out == Succeeded* ]] && echo 0 || echo 1)" "$out"

  # c) a UDP client on a fixed source port while its backend pod is replaced
  local old
  e2e_wait_echo $E2E_NS web
  old=$(kc -n $E2E_NS get pods -l app=web -o json | jq -r '[.items[] | select(.metadata.deletionTimestamp == null)][0].metadata.name')
  probe_pod udp-fixed "$w2" "udp://$cip:8081" --source-port 40000 --count 100 --interval 200ms --timeout 500ms --max-failures 100
  kc -n $E2E_NS wait --for=condition=Ready pod/udp-fixed --timeout 60s >/dev/null
  sleep 3
  kc -n $E2E_NS delete pod "$old" --grace-period 1 --wait=false >/dev/null
  out=$(pod_outcome udp-fixed)
  local last tail_ok
  last=$(echo "$out" | sed -n 's/.*"last":"\([^"]*\)".*/\1/p')
  tail_ok=$(echo "$out" | sed -n 's/.*"tailOK":\([0-9]*\).*/\1/p')
  case_result "c (UDP from a fixed port, backend $old replaced)" \
    "$([ -n "$last" ] && [ "$last" != "$old" ] && [ "${tail_ok:-0}" -ge 20 ] && echo 0 || echo 1)" "$out"

  kc delete namespace $E2E_NS --wait=false >/dev/null
  echo "=== e2e: cases took $((SECONDS - t0))s"
  [ ${#case_failures[@]} = 0 ]
}
