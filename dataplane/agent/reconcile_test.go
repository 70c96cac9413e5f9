package agent

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubedirect/kubedirect/dataplane/cni"
)

// TestReconcileWritesOnlyDifferences: unchanged entries are not rewritten, changed and new ones are
// put, gone ones deleted; a failed write stays pending and is retried by the next call, and an error
// already reported is not reported again.
func TestReconcileWritesOnlyDifferences(t *testing.T) {
	have := map[string]int{"same": 1, "changed": 2, "gone": 3}
	want := map[string]int{"same": 1, "changed": 20, "new": 4, "flaky": 5, "stale": 6}
	var puts, dels []string
	fail := map[string]error{"flaky": errors.New("map full"), "stale": errReported}
	put := func(k string, _ int) error { puts = append(puts, k); return fail[k] }
	del := func(k string, _ int) error { dels = append(dels, k); return nil }

	err := reconcile(have, want, put, del)
	if err == nil || !errors.Is(err, fail["flaky"]) || errors.Is(err, errReported) {
		t.Fatalf("error %v: want the flaky write's error only", err)
	}
	slices.Sort(puts)
	if !slices.Equal(puts, []string{"changed", "flaky", "new", "stale"}) || !slices.Equal(dels, []string{"gone"}) {
		t.Fatalf("puts %v dels %v", puts, dels)
	}
	if want := map[string]int{"same": 1, "changed": 20, "new": 4}; !maps.Equal(have, want) {
		t.Fatalf("have %v after the first call, want %v", have, want)
	}

	delete(fail, "flaky")
	delete(fail, "stale")
	puts, dels = nil, nil
	if err := reconcile(have, want, put, del); err != nil {
		t.Fatal(err)
	}
	slices.Sort(puts)
	if !slices.Equal(puts, []string{"flaky", "stale"}) || len(dels) != 0 {
		t.Fatalf("retry: puts %v dels %v, want only the failed writes", puts, dels)
	}
	if !maps.Equal(have, want) {
		t.Fatalf("have %v, want %v", have, want)
	}
}

func testNode(name, internalIP, podCIDR string, extra ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	if internalIP != "" {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: internalIP})
	}
	for _, a := range extra {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a})
	}
	return n
}

// TestDesiredNodesTunnelsAndNodePortAddresses: every other node with a pod CIDR and an InternalIP gets a
// tunnel (this node and a node still without a pod CIDR do not), and NodePorts answer on the Node's
// addresses and every local IPv4 address except loopback.
func TestDesiredNodesTunnelsAndNodePortAddresses(t *testing.T) {
	nodes := []*corev1.Node{
		testNode("a", "192.168.0.1", "10.244.0.0/24", "203.0.113.1"),
		testNode("b", "192.168.0.2", "10.244.1.0/24"),
		testNode("c", "192.168.0.3", ""),
	}
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("172.18.0.5"), netip.MustParseAddr("192.168.0.1")}
	st, err := desiredNodes(nodes, "a", local)
	if err != nil {
		t.Fatal(err)
	}
	wantTunnels := map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.244.1.0/24"): netip.MustParseAddr("192.168.0.2")}
	if !maps.Equal(st.Tunnels, wantTunnels) {
		t.Errorf("tunnels %v, want %v", st.Tunnels, wantTunnels)
	}
	wantAddrs := map[netip.Addr]bool{}
	for _, a := range []string{"192.168.0.1", "203.0.113.1", "172.18.0.5"} {
		wantAddrs[netip.MustParseAddr(a)] = true
	}
	if !maps.Equal(st.Addrs, wantAddrs) {
		t.Errorf("node addresses %v, want %v", st.Addrs, wantAddrs)
	}
	if st.Self.Name != "a" || len(st.Nodes) != 3 {
		t.Errorf("self %+v, %d nodes", st.Self, len(st.Nodes))
	}
}

// TestDesiredNodesWaitsForThisNode: this node missing, or without a pod CIDR yet, is an error (the agent
// waits), not an empty state that would delete every tunnel.
func TestDesiredNodesWaitsForThisNode(t *testing.T) {
	nodes := []*corev1.Node{testNode("a", "192.168.0.1", "10.244.0.0/24"), testNode("b", "192.168.0.2", "")}
	for _, self := range []string{"x", "b"} {
		if _, err := desiredNodes(nodes, self, nil); err == nil {
			t.Errorf("node %s: no error", self)
		}
	}
}

// TestDesiredEndpointsSkipsUnfinishedAdds: a pod whose CNI ADD has not recorded its veth yet is not
// programmed; the others carry their veth's ifindex and both MACs.
func TestDesiredEndpointsSkipsUnfinishedAdds(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("10.244.0.6")
	got := desiredEndpoints([]cni.Endpoint{
		{IP: ip1, HostIfindex: 7, PodMAC: "02:00:00:00:00:01", HostMAC: "02:00:00:00:00:02"},
		{IP: ip2},
	})
	v, ok := got[ip1]
	if len(got) != 1 || !ok || v.Ifindex != 7 || v.MAC != [6]byte{2, 0, 0, 0, 0, 1} || v.HostMAC != [6]byte{2, 0, 0, 0, 0, 2} {
		t.Fatalf("endpoints %+v", got)
	}
}
