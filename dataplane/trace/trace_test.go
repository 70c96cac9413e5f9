package trace_test

import (
	"encoding/json"
	"net"
	"net/netip"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/dataplane/trace"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// The node under test is nodeA on an underlay the test creates in its own network namespace (a veth
// with nodeA's address and a permanent neighbour for nodeB), so the programs' FIB lookups are the
// namespace's.
var (
	nodeA  = netip.MustParseAddr("192.168.61.1")
	nodeB  = netip.MustParseAddr("192.168.61.2")
	client = netip.MustParseAddr("192.168.61.99")
	cidrA  = netip.MustParsePrefix("10.244.1.0/24")
	cidrB  = netip.MustParsePrefix("10.244.2.0/24")
	podB   = netip.MustParseAddr("10.244.2.20")
)

// node is a loaded datapath programmed as nodeA, with the namespace its traces run in.
type node struct {
	t    *testing.T
	maps *maps.Set
	ns   *testutil.Netns
}

func newNode(t *testing.T) *node {
	t.Helper()
	testutil.RequireRoot(t)
	ns := testutil.NewNetns(t, "kdtr")
	ns.IP("link", "add", "kdtr0", "type", "veth", "peer", "name", "kdtr1")
	ns.IP("addr", "add", nodeA.String()+"/24", "dev", "kdtr0")
	ns.IP("link", "set", "kdtr0", "up")
	ns.IP("link", "set", "kdtr1", "up")
	ns.IP("neigh", "replace", nodeB.String(), "lladdr", "02:00:00:00:00:02", "dev", "kdtr0", "nud", "permanent")
	n := &node{t: t, ns: ns}
	var ifindex int
	n.ns.Do(func() {
		ifc, err := net.InterfaceByName("kdtr0")
		if err != nil {
			t.Error(err)
			return
		}
		ifindex = ifc.Index
	})
	d := loadertest.Load(t, loader.Options{})
	n.maps = d.Maps
	must(t, n.maps.SetConfig(maps.Config{NodeIP: nodeA.As4(), PodCIDR: cidrA.Addr().As4(), PodMask: [4]byte(net.CIDRMask(24, 32)),
		HairpinAddr: maps.DefaultHairpinAddr.As4(), VXLANIfindex: 4242, NetdevIfindex: uint32(ifindex), VXLANPort: 8472,
		Mode: maps.ModeTunnel}))
	must(t, n.maps.AddNodeAddr(nodeA))
	must(t, n.maps.SetTunnel(cidrB, nodeB))
	return n
}

// nodePort programs a NodePort frontend (any node address) with bes, all on nodeB; none with flags
// SvcReject is a Service without endpoints.
func (n *node) nodePort(id uint32, port uint16, flags uint32, bes ...netip.AddrPort) {
	n.t.Helper()
	var vals []maps.BackendValue
	for _, b := range bes {
		vals = append(vals, maps.BackendValue{Addr: b.Addr().As4(), Port: b.Port(), NodeIP: nodeB.As4(), Flags: maps.BackendRemote})
	}
	_, _, err := n.maps.SetService(id, []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, port, 6, maps.ScopeExternal)},
		[]uint32{flags}, maps.ServiceValue{}, vals, 0, 0)
	must(n.t, err)
}

func (n *node) trace(from, to string) trace.Result {
	n.t.Helper()
	req, err := trace.ParseRequest(from, to, "netdev")
	must(n.t, err)
	var res trace.Result
	n.ns.Do(func() { res, err = trace.Run(n.maps, req) })
	must(n.t, err)
	return res
}

// liveState is what a trace must leave as it was: the node's conntrack entries and counters.
func (n *node) liveState() (int, maps.Counters) {
	n.t.Helper()
	ct, err := n.maps.ConntrackCount()
	must(n.t, err)
	c, err := n.maps.ReadMetrics()
	must(n.t, err)
	return ct, c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRootTraceNodePortToRemoteBackendNamesBackendAndPeer: a NodePort whose backend runs on another
// node is traced as encapsulated to that node, with the backend named, and the node's conntrack and
// counters are as they were.
func TestRootTraceNodePortToRemoteBackendNamesBackendAndPeer(t *testing.T) {
	n := newNode(t)
	n.nodePort(7, 30080, 0, netip.AddrPortFrom(podB, 8080))
	ctBefore, cBefore := n.liveState()
	res := n.trace(netip.AddrPortFrom(client, 40000).String(), nodeA.String()+":30080/tcp")
	js, _ := json.Marshal(res)
	t.Logf("%s", js)
	if res.Frontend == nil || res.Frontend.String() != "*:30080/TCP" || res.Frontend.ServiceID != 7 {
		t.Errorf("frontend %+v, want the NodePort *:30080/TCP of service 7", res.Frontend)
	}
	if res.Backend != "10.244.2.20:8080" || res.TunnelPeer != nodeB.String() || res.BackendNodeIP != nodeB.String() {
		t.Errorf("backend %q on %q through tunnel peer %q, want 10.244.2.20:8080 on and through %s", res.Backend, res.BackendNodeIP, res.TunnelPeer, nodeB)
	}
	if res.Verdict != "encap" || res.Action != "redirect" || res.Established {
		t.Errorf("verdict %q action %q established %v, want a new flow encapsulated (redirect)", res.Verdict, res.Action, res.Established)
	}
	if res.Output == nil || res.Output.Dst != nodeA.String()+":30080" || res.Output.Src != client.String()+":40000" {
		t.Errorf("output %+v, want the original packet (the peer translates)", res.Output)
	}
	ctAfter, cAfter := n.liveState()
	if ctAfter != ctBefore {
		t.Errorf("live conntrack has %d entries after the trace, %d before", ctAfter, ctBefore)
	}
	if cAfter.Verdicts["encap"] != cBefore.Verdicts["encap"] {
		t.Errorf("live encap counter moved: %v -> %v", cBefore.Verdicts["encap"], cAfter.Verdicts["encap"])
	}
}

// TestRootTraceFrontendWithoutEndpointsSaysReject: a NodePort of a Service without endpoints is
// answered with a reject (TCP RST), as kube-proxy does, and the trace says so with the reason.
func TestRootTraceFrontendWithoutEndpointsSaysReject(t *testing.T) {
	n := newNode(t)
	n.nodePort(9, 30081, maps.SvcReject)
	res := n.trace(netip.AddrPortFrom(client, 40001).String(), nodeA.String()+":30081/tcp")
	t.Logf("%+v", res)
	if res.Verdict != "reject" || res.DropReason != "no_backend" || res.Backend != "" {
		t.Errorf("verdict %q reason %q backend %q, want reject no_backend and no backend", res.Verdict, res.DropReason, res.Backend)
	}
	if res.Frontend == nil || res.Frontend.Port != 30081 {
		t.Errorf("frontend %+v, want the NodePort 30081", res.Frontend)
	}
}

// TestRootTraceEstablishedFlowKeepsItsBackend: the next packet of a flow the node already tracks is
// traced as established and goes where the flow went, even after the Service's backends changed.
func TestRootTraceEstablishedFlowKeepsItsBackend(t *testing.T) {
	n := newNode(t)
	n.nodePort(7, 30080, 0, netip.AddrPortFrom(podB, 8080))
	old := netip.MustParseAddr("10.244.2.99")
	k := maps.ConntrackKey{SrcAddr: client.As4(), DstAddr: nodeA.As4(), SrcPort: 40002, DstPort: 30080, Proto: 6, Dir: maps.CTForward}
	v := maps.ConntrackValue{Expires: maps.MonotonicNow() + 600e9, NATAddr: old.As4(), NATPort: 8080, TunnelPeer: nodeB.As4(),
		ServiceID: 7, Flags: maps.CTNodePortRemote, TCPState: maps.TCPEstablished}
	must(t, n.maps.Conntrack.Put(&k, &v))
	res := n.trace(netip.AddrPortFrom(client, 40002).String(), nodeA.String()+":30080/tcp")
	t.Logf("%+v", res)
	if !res.Established || res.Backend != "10.244.2.99:8080" || res.TunnelPeer != nodeB.String() || res.BackendNodeIP != nodeB.String() || res.Verdict != "encap" {
		t.Errorf("established %v backend %q peer %q verdict %q, want the tracked flow's backend 10.244.2.99:8080 through %s",
			res.Established, res.Backend, res.TunnelPeer, res.Verdict, nodeB)
	}
	if res.Frontend == nil || res.Frontend.ServiceID != 7 {
		t.Errorf("frontend %+v, want service 7's NodePort", res.Frontend)
	}
}
