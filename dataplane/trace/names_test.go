package trace

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNameTellsServiceAndBackendNode: a user reads the Service and the backend's node by name, not the
// map's ids and addresses.
func TestNameTellsServiceAndBackendNode(t *testing.T) {
	svcs := []corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.9",
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30081, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "probe", Name: "echo"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}}},
	}
	nodes := []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "demo-worker2"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.4"}}}}}
	r := Result{Frontend: &Frontend{Addr: "*", Port: 30080, Proto: "tcp"}, Backend: "10.244.2.5:8080", BackendNodeIP: "172.18.0.4"}
	r.Name("demo-worker", svcs, nodes)
	if r.Node != "demo-worker" || r.Frontend.Service != "probe/echo" || r.BackendNodeName != "demo-worker2" {
		t.Errorf("node %q service %q backend node %q, want demo-worker probe/echo demo-worker2", r.Node, r.Frontend.Service, r.BackendNodeName)
	}
	local := Result{Frontend: &Frontend{Addr: "10.96.0.9", Port: 80, Proto: "tcp"}, Backend: "10.244.1.5:8080"}
	local.Name("demo-worker", svcs, nodes)
	if local.Frontend.Service != "default/other" || local.BackendNodeName != "demo-worker" {
		t.Errorf("service %q backend node %q, want default/other on the traced node", local.Frontend.Service, local.BackendNodeName)
	}
}
