# shellcheck shell=bash
# The e2e's fault cases, sourced by hack/e2e.sh; run_faults runs them on the cluster $current_cluster
# with kc (kubectl for it), $BIN, probe_pod/pod_outcome/case_result from hack/e2e/cases.sh and the e2e_
# helpers of hack/e2e/lib.sh (which cases.sh sources).
#   f1) the agent DaemonSet rolled (a chart upgrade's rolling update: every node's agent replaced, one
#       node at a time) under load from this machine through NodePorts (a backend on the same node and
#       one on another node) and from a pod to a ClusterIP: established connections (one kept HTTP
#       connection each) and a UDP flow from a fixed port lose nothing; new connections that failed
#       are counted (goal 0, reported)
#   f2) a worker's node container restarted (docker restart: kubelet, containerd, the agent and the
#       pods start again): the node becomes Ready, its agent is ready, a pod on it answers through a
#       NodePort on another node, and `kubedirect verify` finds no stale or missing map entry

FAULTS_NS=kd-faults

run_faults() {
  case_failures=()
  local E2E_NS=$FAULTS_NS # probe_pod and pod_outcome work in this namespace
  local t0=$SECONDS
  local workers w1 w2 ds
  workers=($(e2e_workers))
  w1=${workers[0]} w2=${workers[1]:-${workers[0]}}
  ds=$(kc -n kube-system get ds -o json | jq -r '.items[] | select(any(.spec.template.spec.containers[]; .name == "agent")) | .metadata.name')
  self_image=$(kc -n kube-system get ds "$ds" -o jsonpath='{.spec.template.spec.containers[?(@.name=="agent")].image}')
  kc create namespace $FAULTS_NS >/dev/null
  # one echo pod on each worker, each behind its own NodePort Service
  local w
  for w in "$w1" "$w2"; do
    e2e_apply_echo $FAULTS_NS "web-$w" "$w" "$self_image"
  done
  for w in "$w1" "$w2"; do e2e_wait_echo $FAULTS_NS "web-$w"; done
  local np np_udp cip
  np=$(e2e_node_port $FAULTS_NS "web-$w1" http)
  np_udp=$(e2e_node_port $FAULTS_NS "web-$w1" udp)
  cip=$(e2e_cluster_ip $FAULTS_NS "web-$w1")
  local local_url="http://$(e2e_node_ip "$w1"):$np/" remote_url="http://$(e2e_node_ip "$w2"):$np/"

  # f1) the agents rolled under load: about 40 s of traffic, the rollout starts after 3 s
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/kd-faults.XXXXXX")
  "$BIN" echo probe "$remote_url" --count 800 --interval 50ms --timeout 2s --max-failures 800 >"$dir/new-remote" 2>&1 &
  local p1=$!
  "$BIN" echo probe "$local_url" --count 800 --interval 50ms --timeout 2s --max-failures 800 >"$dir/new-local" 2>&1 &
  local p2=$!
  "$BIN" echo probe "$remote_url" --reuse --count 400 --interval 100ms --timeout 2s >"$dir/kept-remote" 2>&1 &
  local p3=$!
  "$BIN" echo probe "$local_url" --reuse --count 400 --interval 100ms --timeout 2s >"$dir/kept-local" 2>&1 &
  local p4=$!
  "$BIN" echo probe "udp://$(e2e_node_ip "$w2"):$np_udp" --source-port 40123 --count 400 --interval 100ms --timeout 1s \
    --max-failures 400 >"$dir/udp" 2>&1 &
  local p5=$!
  probe_pod fault-kept "$w2" "http://$cip:8080/" --reuse --count 400 --interval 100ms --timeout 2s
  sleep 3
  local t_roll=$SECONDS
  kc -n kube-system rollout restart daemonset "$ds" >/dev/null
  kc -n kube-system rollout status daemonset "$ds" --timeout 300s >/dev/null
  local rolled=$((SECONDS - t_roll))
  local rc=0 detail="rollout took ${rolled}s;" name
  wait $p1 $p2 $p3 $p4 $p5 || true
  probe_summary() { grep '"summary"' "$dir/$1" | jq -r '"\(.ok) ok, \(.failed) failed"'; }
  probe_failed() { grep '"summary"' "$dir/$1" | sed -n 's/.*"failed":\([0-9]*\).*/\1/p'; }
  for name in kept-remote kept-local; do
    detail+=" $name (established, NodePort): $(probe_summary $name);"
    [ "$(probe_failed $name)" = 0 ] || rc=1
  done
  local kept_pod
  kept_pod=$(pod_outcome fault-kept)
  detail+=" kept pod->ClusterIP: ${kept_pod%% *};"
  [[ $kept_pod == Succeeded* ]] || rc=1
  # the UDP flow keeps its backend (pinned conntrack): every datagram after the first answered
  detail+=" udp fixed port: $(probe_summary udp);"
  [ "$(probe_failed udp)" = 0 ] || rc=1
  for name in new-remote new-local; do detail+=" $name (new connections): $(probe_summary $name);"; done
  case_result "f1 (agent DaemonSet rolled under load)" $rc "$detail"
  [ $rc = 0 ] || { cp "$dir"/* "$ARTIFACTS/" 2>/dev/null || true; }
  rm -rf "$dir"

  # f2) a worker's node container restarted
  local t_restart=$SECONDS
  rc=0
  docker restart "$w2" >/dev/null
  kc wait --for=condition=Ready "node/$w2" --timeout 300s >/dev/null || rc=1
  kc -n kube-system rollout status daemonset "$ds" --timeout 300s >/dev/null || rc=1
  kc -n $FAULTS_NS rollout status deployment "web-$w2" --timeout 300s >/dev/null || rc=1
  # the pod on the restarted node through the NodePort of the other worker (the tunnel to it)
  local np2 out
  np2=$(e2e_node_port $FAULTS_NS "web-$w2" http)
  out=$("$BIN" echo probe "http://$(e2e_node_ip "$w1"):$np2/" --count 60 --interval 1s --timeout 1s --max-failures 59 2>&1 | grep '"summary"')
  local tail_ok
  tail_ok=$(echo "$out" | sed -n 's/.*"tailOK":\([0-9]*\).*/\1/p')
  [ "${tail_ok:-0}" -ge 5 ] || rc=1
  local verify
  if verify=$("$BIN" verify --name "$current_cluster" 2>&1); then :; else rc=1; fi
  [ $rc = 0 ] || echo "$verify"
  case_result "f2 ($w2's node container restarted)" $rc \
    "back in $((SECONDS - t_restart))s; pod on $w2 via $w1's NodePort: ${out:-no answer}; verify: $(echo "$verify" | tail -1)"

  kc delete namespace $FAULTS_NS --wait=false >/dev/null
  echo "=== e2e: faults took $((SECONDS - t0))s"
  [ ${#case_failures[@]} = 0 ]
}
