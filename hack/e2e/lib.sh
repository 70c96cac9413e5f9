# shellcheck shell=bash
# What the e2e scripts share (hack/e2e/cases.sh, faults.sh, observe-*.sh source it): kubectl for the
# cluster under test, its nodes and agent image, and the echo workload the cases call. Its functions
# start with e2e_ because bash functions are global across sourced files (hack/e2e.sh has its own).
# It sets no shell options: the script that sources it keeps its own.

# kc is kubectl for the cluster $current_cluster; hack/e2e.sh defines its own (its cached kubectl)
# before sourcing, a standalone script gets this one.
if ! declare -F kc >/dev/null; then
  kc() { kubectl --kubeconfig "$KUBECONFIG" --context "kind-$current_cluster" "$@"; }
fi

# e2e_agent_image prints the image of the kubedirect agent DaemonSet: the self-image, whose kubedirect
# binary the echo workloads and probe pods run.
e2e_agent_image() {
  kc -n kube-system get ds -o jsonpath='{.items[*].spec.template.spec.containers[?(@.name=="agent")].image}' |
    awk '{print $1}'
}

# e2e_workers prints the names of the nodes that are not control-plane nodes, space-separated
# (`workers=($(e2e_workers))`; no `read`: jsonpath prints no newline, read then returns 1 under set -e).
e2e_workers() {
  kc get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[*].metadata.name}'
}

# e2e_node_ip NODE prints the InternalIP of NODE.
e2e_node_ip() {
  kc get node "$1" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}'
}

# e2e_kind_gateway prints the IPv4 gateway of the kind network: the address this host, the outside
# client, has there.
e2e_kind_gateway() {
  docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 -F . || true
}

# e2e_apply_echo NS NAME NODE IMAGE [HTTP_PORT] runs the echo workload: a one-replica Deployment NAME
# (pods labelled app=NAME) pinned to NODE, serving HTTP on 8080 and UDP on 8081, behind a NodePort
# Service NAME with the ports http HTTP_PORT/TCP (default 8080, target 8080) and udp 8081/UDP. A rollout replaces its pod gracefully (surge
# first, endpoints leave the Service while the old pod still serves). Wait with e2e_wait_echo.
e2e_apply_echo() {
  local ns=$1 name=$2 node=$3 image=$4 http_port=${5:-8080}
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name}
spec:
  replicas: 1
  selector: {matchLabels: {app: $name}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      nodeSelector: {kubernetes.io/hostname: $node}
      terminationGracePeriodSeconds: 30
      automountServiceAccountToken: false
      enableServiceLinks: false
      containers:
        - name: echo
          image: $image
          command: ["/usr/local/bin/kubedirect", "echo", "--http-port", "8080", "--udp-port", "8081"]
          env:
            - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
            - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
          # endpoints leave the Service while the pod still serves: it terminates gracefully
          lifecycle: {preStop: {sleep: {seconds: 5}}}
---
apiVersion: v1
kind: Service
metadata: {name: $name}
spec:
  type: NodePort
  selector: {app: $name}
  ports:
    - {name: http, port: $http_port, targetPort: 8080, protocol: TCP}
    - {name: udp, port: 8081, protocol: UDP}
EOF
}

# e2e_wait_echo NS NAME waits until the echo workload NAME's rollout is complete (its pod ready).
e2e_wait_echo() {
  kc -n "$1" rollout status deployment "$2" --timeout 120s >/dev/null
}

# e2e_echo_pod_ip NS NAME prints the address of the echo workload NAME's pod (after e2e_wait_echo).
e2e_echo_pod_ip() {
  kc -n "$1" get pods -l "app=$2" -o jsonpath='{.items[0].status.podIP}'
}

# e2e_node_port NS SERVICE PORT_NAME prints the NodePort of the Service's port PORT_NAME.
e2e_node_port() {
  kc -n "$1" get service "$2" -o jsonpath="{.spec.ports[?(@.name==\"$3\")].nodePort}"
}

# e2e_cluster_ip NS SERVICE prints the Service's ClusterIP.
e2e_cluster_ip() {
  kc -n "$1" get service "$2" -o jsonpath='{.spec.clusterIP}'
}
