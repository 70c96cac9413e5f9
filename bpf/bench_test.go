package bpf_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// benchRepeat is the BPF_PROG_TEST_RUN repeat count per measurement.
const benchRepeat = 1_000_000

// fillServices programs n ClusterIP services (10.96.0.0/15 + port 80), each
// with one backend, besides the ones under test.
func fillServices(b *testing.B, h *harness, n int) {
	m := h.d.Maps
	keys := make([]maps.ServiceKey, 0, n)
	vals := make([]maps.ServiceValue, 0, n)
	bkeys := make([]maps.BackendKey, 0, n)
	bvals := make([]maps.BackendValue, 0, n)
	for i := 0; i < n; i++ {
		id := uint32(1000 + i)
		a := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})
		keys = append(keys, svcKey(a, 80, maps.ProtoTCP, maps.ScopeCluster))
		vals = append(vals, maps.ServiceValue{ID: id, Count: 1})
		bkeys = append(bkeys, maps.BackendKey{ServiceID: id})
		bvals = append(bvals, maps.BackendValue{Addr: maps.Addr4(podB), NodeIP: maps.Addr4(nodeB), Port: 8080, Flags: maps.BackendRemote})
	}
	if _, err := m.Backends.BatchUpdate(bkeys, bvals, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Services.BatchUpdate(keys, vals, nil); err != nil {
		b.Fatal(err)
	}
}

// runRepeat runs prog benchRepeat times on data and returns ns per packet.
func runRepeat(b *testing.B, h *harness, prog *ebpf.Program, data []byte, want uint32) float64 {
	var ret uint32
	var err error
	var d time.Duration
	h.inNetns(func() {
		start := time.Now()
		ret, err = prog.Run(&ebpf.RunOptions{Data: data, Repeat: benchRepeat,
			Context: skbCtx{IngressIfindex: h.ifindex, Ifindex: h.ifindex}})
		d = time.Since(start)
	})
	if err != nil {
		b.Fatal(err)
	}
	if ret != want {
		b.Fatalf("verdict %d, want %d", ret, want)
	}
	return float64(d.Nanoseconds()) / benchRepeat
}

// BenchmarkRootNodePortProgram measures from_netdev (the NodePort program)
// in ns per packet with 10, 10,000 and 100,000 services programmed:
//
//   - established: a NodePort flow forwarded to a remote node, after its
//     first packet (conntrack hit, tunnel key, redirect): the per-packet path.
//   - lookup: a NodePort packet that misses conntrack and is resolved through
//     the frontend maps every time (exact miss, node address, wildcard hit;
//     eTP Local with no local backend, so no state is created and the packet
//     is dropped): the service-lookup cost the service count could affect.
//
// Each figure is one BPF_PROG_TEST_RUN with repeat 1e6 per b.N iteration.
// The parent benchmark logs the ratio 100,000 / 10 for both.
func BenchmarkRootNodePortProgram(b *testing.B) {
	results := map[string]map[int]float64{"established": {}, "lookup": {}}
	counts := []int{10, 10_000, 100_000}
	for _, n := range counts {
		for _, path := range []string{"established", "lookup"} {
			b.Run(fmt.Sprintf("services=%d/%s", n, path), func(b *testing.B) {
				h := newHarnessSized(b, loader.MapSizes{Services: 262144, Backends: 262144, Conntrack: 65536},
					nodeA, cidrA, maps.ModeTunnel)
				h.d.Maps.SetConfig(func() maps.Config { c, _ := h.d.Maps.GetConfig(); c.Debug = 0; c.EventSample = 0; return c }())
				fillServices(b, h, n-2)
				h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
					backend{addr: podB, port: 8080, node: nodeB})
				h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, maps.SvcExternalLocal,
					backend{addr: podB, port: 8080, node: nodeB})
				var data []byte
				want := uint32(actRedirect)
				if path == "established" {
					data = tcp(client, 50000, nodeA, 30080, tcpACK).bytes()
				} else {
					data = tcp(client, 50000, nodeA, 30081, tcpACK).bytes()
					want = actShot
				}
				runRepeat(b, h, h.d.Programs.FromNetdev, data, want) // warm up, create the flow
				var total float64
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					total += runRepeat(b, h, h.d.Programs.FromNetdev, data, want)
				}
				ns := total / float64(b.N)
				b.ReportMetric(ns, "ns/pkt")
				results[path][n] = ns
			})
		}
	}
	for path, r := range results {
		if r[10] > 0 && r[100_000] > 0 {
			b.Logf("%s: 10 services %.1f ns/pkt, 10k %.1f, 100k %.1f; ratio 100k/10 = %.2f",
				path, r[10], r[10_000], r[100_000], r[100_000]/r[10])
		}
	}
}
