package agent

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// syncCluster is the API state an initial sync programs: Services, their EndpointSlices and two Nodes.
type syncCluster struct {
	svcs   cache.Indexer
	slices cache.Indexer
	nodes  cache.Indexer
	topo   Topology
}

// newSyncCluster returns n ClusterIP Services (one TCP port) with eps ready endpoints each on the
// remote node-2; Service i has ClusterIP 10.96.0.0+i and endpoints in 10.244.128.0/17.
func newSyncCluster(tb testing.TB, n, eps int) *syncCluster {
	tb.Helper()
	c := &syncCluster{
		svcs:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		slices: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{sliceIndex: sliceServiceKey}),
		nodes:  cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
	}
	self := NodeInfo{Name: "node-1", InternalIP: netip.MustParseAddr("172.18.0.2"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}
	self.Addrs = []netip.Addr{self.InternalIP}
	other := NodeInfo{Name: "node-2", InternalIP: netip.MustParseAddr("172.18.0.3"), PodCIDR: netip.MustParsePrefix("10.244.128.0/17")}
	other.Addrs = []netip.Addr{other.InternalIP}
	c.topo = Topology{Self: self, Nodes: map[string]NodeInfo{"node-1": self, "node-2": other}}
	for _, ni := range []NodeInfo{self, other} {
		must(tb, c.nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: ni.Name}}))
	}
	svcBase := netip.MustParseAddr("10.96.0.0").As4()
	epBase := netip.MustParseAddr("10.244.128.0").As4()
	ep := 0
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		ip := addrPlus(svcBase, i)
		must(tb, c.svcs.Add(testService(name, ip)))
		must(tb, c.slices.Add(testSlice(name, epBase, ep, eps)))
		ep += eps
	}
	return c
}

// slicesOf returns the EndpointSlices of svc.
func (c *syncCluster) slicesOf(svc *corev1.Service) []*discoveryv1.EndpointSlice {
	objs, _ := c.slices.ByIndex(sliceIndex, svc.Namespace+"/"+svc.Name)
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// addrPlus returns base + i.
func addrPlus(base [4]byte, i int) netip.Addr {
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func testService(name string, ip netip.Addr) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip.String(), ClusterIPs: []string{ip.String()},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

// testSlice is the EndpointSlice of Service name with eps ready endpoints on node-2, from base+first.
func testSlice(name string, base [4]byte, first, eps int) *discoveryv1.EndpointSlice {
	ready, node, tcp, port, pn := true, "node-2", corev1.ProtocolTCP, int32(8080), "http"
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pn, Port: &port, Protocol: &tcp}}}
	for j := range eps {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{addrPlus(base, first+j).String()},
			NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return sl
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// newSyncAgent returns an agent over the loaded datapath dp and the API state c, ready for initialSync
// (what Run does before it, minus the API server).
func newSyncAgent(tb testing.TB, dp *loader.Datapath, c *syncCluster) *Agent {
	tb.Helper()
	cfg := &config.Config{}
	cfg.SetDefaults()
	cfg.CNIDataDir = tb.TempDir()
	a, err := New(Options{Config: cfg, NodeName: "node-1", Client: fake.NewClientset()})
	must(tb, err)
	a.dp = dp
	a.prog = NewProgrammer(dp.Maps)
	must(tb, a.prog.Adopt())
	a.hc = newServiceHealth("127.0.0.1", func() bool { return true }, a.log)
	tb.Cleanup(a.hc.Close)
	a.rec = record.NewFakeRecorder(100)
	a.svcLister = corelisters.NewServiceLister(c.svcs)
	a.nodeLister = corelisters.NewNodeLister(c.nodes)
	a.sliceIndexer = c.slices
	a.topo = c.topo
	return a
}

// BenchmarkRootInitialSync programs 10,000 Services with 5 endpoints each into freshly loaded maps, as
// the agent's initial sync does (run with -benchtime 1x -cpuprofile to see where the time goes). It
// reports what the agent's memory holds: the Go heap in use (after a collection) for the informer
// caches of those objects (stripped as the agent's transform strips them), and what the sync adds
// (the Programmer's record of what it wrote), and the time the datapath load took (programs verified,
// maps created: the agent's first startup phase).
func BenchmarkRootInitialSync(b *testing.B) {
	testutil.RequireRoot(b)
	base := heapInUse()
	c := newSyncCluster(b, 10000, 5)
	for _, idx := range []cache.Indexer{c.svcs, c.slices} {
		for _, o := range idx.List() {
			st, err := stripObject(o)
			must(b, err)
			must(b, idx.Update(st))
		}
	}
	caches := heapInUse()
	var load time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		start := time.Now()
		dp := loadertest.Load(b, loader.Options{})
		load += time.Since(start)
		a := newSyncAgent(b, dp, c)
		b.StartTimer()
		must(b, a.initialSync(b.Context()))
		b.StopTimer()
		b.ReportMetric(float64(heapInUse()-caches)/(1<<20), "MiB-sync")
		runtime.KeepAlive(a)
		b.StartTimer()
	}
	b.ReportMetric(float64(caches-base)/(1<<20), "MiB-caches")
	b.ReportMetric(load.Seconds()/float64(b.N), "s-load")
}

// heapInUse is the Go heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestRootInitialSyncLeavesMapsEqualToServices: an agent restarting over maps a previous agent
// programmed (Services since deleted, Services whose endpoints changed, unchanged ones) and finding new
// Services leaves the real maps holding exactly what the Services say, and keeps the backend table of
// an unchanged Service (its established flows keep their backends).
func TestRootInitialSyncLeavesMapsEqualToServices(t *testing.T) {
	testutil.RequireRoot(t)
	dp := loadertest.Load(t, loader.Options{})
	before := newSyncCluster(t, 30, 5)
	must(t, newSyncAgent(t, dp, before).initialSync(t.Context()))
	unchanged := maps.NewServiceKey(netip.MustParseAddr("10.96.0.25"), 80, maps.ProtoTCP, maps.ScopeCluster)
	v0, err := dp.Maps.LookupService(unchanged)
	must(t, err)

	// svc-0..9 deleted, svc-10..19 down to 2 endpoints, svc-20..29 unchanged, svc-30..39 new
	after := newSyncCluster(t, 40, 5)
	for i := range 10 {
		name := fmt.Sprintf("svc-%d", i)
		must(t, after.svcs.Delete(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}))
		must(t, after.slices.Delete(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}))
		name = fmt.Sprintf("svc-%d", 10+i)
		must(t, after.slices.Update(testSlice(name, netip.MustParseAddr("10.244.200.0").As4(), 2*i, 2)))
	}
	a := newSyncAgent(t, dp, after)
	must(t, a.initialSync(t.Context()))

	got := newMem()
	must(t, dp.Maps.IterateServices(func(k maps.ServiceKey, v maps.ServiceValue) bool { got.svcs[k] = v; return true }))
	must(t, dp.Maps.IterateBackends(func(k maps.BackendKey, v maps.BackendValue) bool { got.bes[k] = v; return true }))
	var want []PortState
	for _, o := range after.svcs.List() {
		svc := o.(*corev1.Service)
		st, err := Translate(svc, after.slicesOf(svc), &after.topo)
		must(t, err)
		want = append(want, st.Ports...)
	}
	if len(want) != 30 {
		t.Fatalf("%d ports wanted, the cluster has 30 Services", len(want))
	}
	if err := tableHolds(got, want); err != nil {
		t.Fatalf("maps after the initial sync: %v", err)
	}
	if v1, err := dp.Maps.LookupService(unchanged); err != nil || v1 != v0 {
		t.Errorf("unchanged Service's frontend %+v (%v), before the restart %+v", v1, err, v0)
	}
}
