package inspect

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func node(name, ip, cidr string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
}

// demo is two nodes and one NodePort Service default/web with a backend on each.
func demo() *Cluster {
	ready := true
	na, nb := "a", "b"
	port, proto := int32(8080), corev1.ProtocolTCP
	return &Cluster{
		Nodes: []*corev1.Node{node("a", "172.18.0.2", "10.244.0.0/24"), node("b", "172.18.0.3", "10.244.1.0/24")},
		Services: []*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.4.1",
				Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(8080)}}}}},
		Slices: []*discoveryv1.EndpointSlice{{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: &port, Protocol: &proto}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.0.5"}, NodeName: &na, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
				{Addresses: []string{"10.244.1.7"}, NodeName: &nb, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			}}},
	}
}

// dumpOf is what a node's maps hold when the agent programmed want exactly.
func dumpOf(t *testing.T, want *Desired) *Dump {
	t.Helper()
	d := &Dump{Node: want.Node}
	ids := map[string]uint32{}
	for k, w := range want.Frontends {
		id, ok := ids[w.Port]
		if !ok {
			id = uint32(len(ids) + 1)
			ids[w.Port] = id
			for i, b := range w.All {
				d.Backends = append(d.Backends, BackendSlot{ServiceID: id, Table: "all", Slot: uint16(i), Backend: b})
			}
			for i, b := range w.Local {
				d.Backends = append(d.Backends, BackendSlot{ServiceID: id, Table: "local", Slot: uint16(i), Backend: b})
			}
		}
		d.Frontends = append(d.Frontends, FrontendOf(k, maps.ServiceValue{ID: id, Count: uint16(len(w.All)),
			LocalCount: uint16(len(w.Local)), Flags: w.Flags, AffinityTimeout: w.AffinityTimeout}))
	}
	for p, ip := range want.Tunnels {
		d.Tunnels = append(d.Tunnels, Tunnel{PodCIDR: p, NodeIP: ip})
	}
	d.Sort()
	// The CLI reads the dump as JSON from the agent pod: diff what survives that trip.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Dump
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return &back
}

func desired(t *testing.T, c *Cluster, node string) *Desired {
	t.Helper()
	w, err := c.Desired(node, "tunnel")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func diffStrings(ds []Difference) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

// TestVerifyCleanWhenMapsMatchTheAPI: maps that hold what the agent's translation says report nothing.
func TestVerifyCleanWhenMapsMatchTheAPI(t *testing.T) {
	c := demo()
	for _, n := range []string{"a", "b"} {
		w := desired(t, c, n)
		if got := c.Diff(w, dumpOf(t, w)); len(got) != 0 {
			t.Errorf("node %s: differences in clean maps: %v", n, diffStrings(got))
		}
	}
}

// TestVerifyNamesEveryCorruption: each kind of damage to a node's maps is named in a user's terms: the
// Service port, the frontend, the backend and its node, the tunnel's pod CIDR and peer node.
func TestVerifyNamesEveryCorruption(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(d *Dump)
		want    []string
	}{
		{"deleted ClusterIP frontend", func(d *Dump) {
			d.Frontends = slices.DeleteFunc(d.Frontends, func(f Frontend) bool { return f.Scope == "cluster" })
		}, []string{"a: missing frontend default/web:80/TCP ClusterIP 10.96.4.1:80"}},
		{"wrong backend", func(d *Dump) {
			for i := range d.Backends {
				if d.Backends[i].Address == netip.MustParseAddr("10.244.1.7") {
					d.Backends[i].Address = netip.MustParseAddr("10.244.1.9")
				}
			}
		}, []string{
			"a: missing backend default/web:80/TCP: 10.244.1.7:8080 (node b) (all table)",
			"a: stale backend default/web:80/TCP: 10.244.1.9:8080 (node b) (all table)",
		}},
		{"wrong tunnel peer", func(d *Dump) { d.Tunnels[0].NodeIP = netip.MustParseAddr("172.18.0.9") },
			[]string{"a: wrong tunnel peer 10.244.1.0/24: to 172.18.0.9, want b"}},
		{"orphaned frontend", func(d *Dump) {
			d.Frontends = append(d.Frontends, FrontendOf(maps.NewServiceKey(netip.MustParseAddr("10.96.9.9"), 53, maps.ProtoUDP, maps.ScopeCluster), maps.ServiceValue{ID: 99}))
		}, []string{"a: orphaned frontend ClusterIP 10.96.9.9:53/UDP: no Service has this frontend"}},
		{"backend table without frontend", func(d *Dump) {
			d.Backends = append(d.Backends, BackendSlot{ServiceID: 77, Table: "all", Backend: Backend{Address: netip.MustParseAddr("10.244.0.8"), Port: 80, Local: true}})
		}, []string{"a: orphaned backend slot table 77 all slot 0: 10.244.0.8:80 (node a); no frontend uses this table"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := demo()
			w := desired(t, c, "a")
			d := dumpOf(t, w)
			tc.corrupt(d)
			got := diffStrings(c.Diff(w, d))
			if !slices.Equal(got, tc.want) {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestInspectServicesLineNamesServiceFrontendAndBackendNodes: the services table reads as the issue's
// example line: Service port, type, frontend, and each backend with its node.
func TestInspectServicesLineNamesServiceFrontendAndBackendNodes(t *testing.T) {
	c := demo()
	d := dumpOf(t, desired(t, c, "a"))
	var out bytes.Buffer
	if err := WriteServices(&out, c.ServiceRows([]*Dump{d}, Filter{})); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"a     default/web:80/TCP  ClusterIP  10.96.4.1:80/TCP  ->  10.244.0.5:8080 (node a), 10.244.1.7:8080 (node b)",
		"a     default/web:80/TCP  NodePort   *:30080/TCP",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if rows := c.ServiceRows([]*Dump{d}, Filter{Service: "kube-system/dns"}); len(rows) != 0 {
		t.Errorf("--service kube-system/dns kept %d rows of default/web", len(rows))
	}
	if rows := c.ServiceRows([]*Dump{d}, Filter{IP: netip.MustParseAddr("10.244.1.7")}); len(rows) != 2 {
		t.Errorf("--ip of a backend kept %d rows, want both frontends", len(rows))
	}
}

// TestInspectConntrackShowsClientFrontendBackendAndPeer: a forwarded NodePort flow reads as the client
// that sent it, the frontend it hit, the backend chosen and the node it was tunnelled to.
func TestInspectConntrackShowsClientFrontendBackendAndPeer(t *testing.T) {
	c := demo()
	d := dumpOf(t, desired(t, c, "a"))
	var id uint32
	for _, f := range d.Frontends {
		if FrontendKind(f) == "NodePort" {
			id = f.ServiceID
		}
	}
	k := maps.ConntrackKey{SrcAddr: [4]byte{172, 18, 0, 1}, DstAddr: [4]byte{172, 18, 0, 2}, SrcPort: 40000, DstPort: 30080, Proto: maps.ProtoTCP}
	v := maps.ConntrackValue{Expires: 5e9, NATAddr: [4]byte{10, 244, 1, 7}, NATPort: 8080, TunnelPeer: [4]byte{172, 18, 0, 3},
		ServiceID: id, Flags: maps.CTNodePortRemote, TCPState: maps.TCPEstablished}
	d.Conntrack = []Conntrack{conntrackOf(k, v, 2e9)}
	var out bytes.Buffer
	if err := WriteConntrack(&out, c.ConntrackRows([]*Dump{d}, Filter{})); err != nil {
		t.Fatal(err)
	}
	want := "a     forward  TCP    default/web:80/TCP  172.18.0.1:40000  172.18.0.2:30080  10.244.1.7:8080  b     nodePortRemote,established  3s"
	if !strings.Contains(out.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, out.String())
	}
}
