package bpf_test

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/dataplane/config"
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
// in ns per packet with 10, 10,000, 100,000 and 1,000,000 services programmed,
// on three paths:
//
//   - established: a NodePort flow forwarded to a remote node, after its
//     first packet (conntrack hit, tunnel key, redirect): the per-packet path.
//   - lookup: a NodePort packet that misses conntrack and is resolved through
//     the frontend maps every time (exact miss, node address, wildcard hit;
//     eTP Local with no local backend, so no state is created and the packet
//     is dropped): the service-lookup cost the service count could affect.
//   - newflow: the first packet of 100,000 distinct flows (service lookup,
//     backend pick, conntrack insert, encapsulation), one BPF_PROG_TEST_RUN
//     each (repeat 1; the kernel's own per-run time, so syscall cost is excluded).
//
// established and lookup are one BPF_PROG_TEST_RUN with repeat 1e6 per
// measurement. The three service counts are loaded side by side and measured
// in turn within every b.N iteration, so a noisy neighbour hits all of them
// alike (the order rotates). Reported: the minimum over the iterations
// ("ns/pkt@N"), the ratio 1M/10 of those minimums, and the median of the
// per-iteration ratios (paired measurements taken seconds apart, the figure
// least disturbed by other load on the machine). Issue #12's goal is a ratio
// of at most 1.1.
func BenchmarkRootNodePortProgram(b *testing.B) {
	counts := []int{10, 10_000, 100_000, 1_000_000}
	last := len(counts) - 1
	for _, path := range []string{"established", "lookup", "newflow"} {
		b.Run(path, func(b *testing.B) {
			hs := make([]*harness, len(counts))
			for i, n := range counts {
				// The service and backend maps are sized as an agent would size them for n
				// Services (twice the entries, as the hash maps' load factor), never below
				// the 262,144 of the smaller counts, so the maps differ only in occupancy.
				size := uint32(max(262144, 2*n))
				h := newHarnessSized(b, config.MapSizes{Services: size, Backends: size, Conntrack: 262144, ConntrackNew: 262144},
					nodeA, cidrA, maps.ModeTunnel)
				c, err := h.d.Maps.GetConfig()
				must(b, err)
				c.Debug, c.EventSample = 0, 0
				must(b, h.d.Maps.SetConfig(c))
				fillServices(b, h, n-2)
				h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
					backend{addr: podB, port: 8080, node: nodeB})
				h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, maps.SvcExternalLocal,
					backend{addr: podB, port: 8080, node: nodeB})
				hs[i] = h
			}
			data := tcp(client, 50000, nodeA, 30080, tcpACK).bytes()
			want := uint32(actRedirect)
			if path == "lookup" {
				data = tcp(client, 50000, nodeA, 30081, tcpACK).bytes()
				want = actShot
			}
			best := make([]float64, len(counts))
			var ratios []float64
			measure := func(i, iter int) float64 {
				if path == "newflow" {
					return newFlows(b, hs[i], iter)
				}
				return runRepeat(b, hs[i], hs[i].d.Programs.FromNetdev, data, want)
			}
			for i := range hs {
				measure(i, -1) // warm up; creates the established flow
			}
			b.ResetTimer()
			for iter := 0; iter < b.N; iter++ {
				this := make([]float64, len(counts))
				for j := range hs {
					// Rotate the order so no count is always measured first.
					i := (j + iter) % len(hs)
					this[i] = measure(i, iter)
					if best[i] == 0 || this[i] < best[i] {
						best[i] = this[i]
					}
				}
				ratios = append(ratios, this[last]/this[0])
			}
			b.StopTimer()
			sort.Float64s(ratios)
			med := ratios[len(ratios)/2]
			for i, n := range counts {
				b.ReportMetric(best[i], fmt.Sprintf("ns/pkt@%d", n))
			}
			b.ReportMetric(best[last]/best[0], "ratio1M/10")
			b.ReportMetric(med, "median-paired-ratio")
			b.Logf("%s: 10 services %.1f ns/pkt, 10k %.1f, 100k %.1f, 1M %.1f (minimums); ratio 1M/10 = %.2f, median of per-iteration ratios %.2f",
				path, best[0], best[1], best[2], best[3], best[last]/best[0], med)
		})
	}
}

// newFlows runs the first packet of 100,000 distinct flows (distinct per
// iter) and returns the kernel-measured ns per packet.
func newFlows(b *testing.B, h *harness, iter int) float64 {
	const flows = 100_000
	var total time.Duration
	pkts := 0
	{
		for f := 0; f < flows; f++ {
			src := netip.AddrFrom4([4]byte{198, 18, byte(f >> 8), byte(f)})
			data := tcp(src, uint16(2048+iter), nodeA, 30080, tcpSYN).bytes()
			ret, d, err := h.d.Programs.FromNetdev.Benchmark(data, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			if ret != actRedirect {
				b.Fatalf("verdict %d", ret)
			}
			total += d
			pkts++
		}
	}
	return float64(total.Nanoseconds()) / float64(pkts)
}
