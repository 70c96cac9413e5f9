package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/flows"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestMonitorNamesNodePortServiceAndFiltersByVerdict: a drop at a NodePort is shown with its Service
// (named from the API server, not on the node) and the tunnel peer with its node name; --verdict drop
// keeps the drop and leaves the forward out; -o json is one flow per line.
func TestMonitorNamesNodePortServiceAndFiltersByVerdict(t *testing.T) {
	kc := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.4.1"},
				Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w2"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.4"}}}},
	)
	names, err := loadNames(t.Context(), kc)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p := &flowPrinter{o: &monitorOptions{verdict: "drop", output: "json"}, names: names, w: &out}
	now := time.Now()
	p.print(flows.Flow{Time: now, Node: "w1", Verdict: "forward", Action: "encap", Proto: "tcp",
		Source: netip.MustParseAddrPort("192.0.2.9:40000"), Frontend: netip.MustParseAddrPort("172.18.0.3:30080"),
		Backend: netip.MustParseAddrPort("10.244.2.5:8080"), TunnelPeer: netip.MustParseAddr("172.18.0.4")})
	p.print(flows.Flow{Time: now, Node: "w1", Verdict: "drop", Reason: "no_local_backend", Proto: "tcp",
		Source: netip.MustParseAddrPort("192.0.2.9:40001"), Frontend: netip.MustParseAddrPort("172.18.0.3:30080")})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("printed %q, want only the drop", out.String())
	}
	var f flows.Flow
	if err := json.Unmarshal([]byte(lines[0]), &f); err != nil {
		t.Fatal(err)
	}
	if f.Service != "default/web:80/TCP" || f.Reason != "no_local_backend" || f.Source.Port() != 40001 {
		t.Fatalf("drop %+v, want default/web:80/TCP no_local_backend from port 40001", f)
	}

	out.Reset()
	p.o = &monitorOptions{output: "table", ip: "172.18.0.4"}
	p.print(flows.Flow{Time: now, Node: "w1", Verdict: "forward", Action: "encap", Proto: "tcp",
		Source: netip.MustParseAddrPort("192.0.2.9:40000"), Frontend: netip.MustParseAddrPort("10.96.4.1:80"),
		Backend: netip.MustParseAddrPort("10.244.2.5:8080"), TunnelPeer: netip.MustParseAddr("172.18.0.4")})
	if s := out.String(); !strings.Contains(s, "FORWARD tcp 192.0.2.9:40000 -> 10.96.4.1:80 (default/web:80/TCP) => 10.244.2.5:8080 via w2 (172.18.0.4)") {
		t.Fatalf("table line %q", s)
	}
}
