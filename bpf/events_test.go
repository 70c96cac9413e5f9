package bpf_test

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// dropEvents returns the drop events among evs.
func dropEvents(evs []maps.Event) []maps.Event {
	var out []maps.Event
	for _, e := range evs {
		if e.Verdict == maps.MetricDrop {
			out = append(out, e)
		}
	}
	return out
}

// setSampling writes the default and the session override of the event rate.
func (h *harness) setSampling(def, override uint32, until uint64) {
	h.t.Helper()
	c, err := h.d.Maps.GetConfig()
	must(h.t, err)
	c.Debug, c.EventSample, c.SampleOverride, c.OverrideUntil = 0, def, override, until
	must(h.t, h.d.Maps.SetConfig(c))
}

// TestRootDropEmitsEventWithReason: a NodePort with externalTrafficPolicy Local hit on a node without a
// local backend, and a truncated packet, are dropped and each reported as a drop event naming the
// reason and the packet's addresses, even when new flows are sampled 1 in a million.
func TestRootDropEmitsEventWithReason(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel)
	h.setSampling(1_000_000, 0, 0)
	h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, maps.SvcExternalLocal,
		backend{addr: podB, port: 8080, node: nodeB})

	h.drainEvents()
	h.runPkt(h.d.Programs.FromNetdev, tcp(client, 50000, nodeA, 30081, tcpSYN), actShot)
	ev := dropEvents(h.drainEvents())
	if len(ev) != 1 || ev[0].Reason != maps.DropNoLocalBackend || netip.AddrFrom4(ev[0].SrcAddr) != client ||
		ev[0].SrcPort != 50000 || netip.AddrFrom4(ev[0].DstAddr) != nodeA || ev[0].DstPort != 30081 ||
		ev[0].Proto != maps.ProtoTCP || ev[0].ServiceID != 2 {
		t.Fatalf("eTP=Local drop events %+v, want one no_local_backend drop of %s:50000 -> %s:30081", ev, client, nodeA)
	}

	good := tcp(client, 50001, nodeA, 30081, tcpSYN).bytes()
	h.run(h.d.Programs.FromNetdev, good[:14+20+10])
	ev = dropEvents(h.drainEvents())
	if len(ev) != 1 || ev[0].Reason != maps.DropMalformed || netip.AddrFrom4(ev[0].SrcAddr) != client {
		t.Fatalf("truncated packet drop events %+v, want one malformed drop from %s", ev, client)
	}
}

// TestRootSampleOverrideLapsesAtDeadline: a monitor session's rate applies until its deadline and the
// agent's default (here: no events) applies after it, with no one writing the config again.
func TestRootSampleOverrideLapsesAtDeadline(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel)
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
		backend{addr: podB, port: 8080, node: nodeB})
	newFlow := func(sport uint16) int {
		h.drainEvents()
		h.runPkt(h.d.Programs.FromNetdev, tcp(client, sport, nodeA, 30080, tcpSYN), actRedirect)
		n := 0
		for _, e := range h.drainEvents() {
			if e.Prog == maps.ProgFromNetdev && e.Verdict == maps.MetricEncap {
				n++
			}
		}
		return n
	}
	h.setSampling(0, 1, maps.MonotonicNow()+3600e9)
	if n := newFlow(50000); n != 1 {
		t.Fatalf("during the override: %d flow events, want 1", n)
	}
	h.setSampling(0, 1, maps.MonotonicNow()-1)
	if n := newFlow(50001); n != 0 {
		t.Fatalf("after the deadline: %d flow events, want 0 (the default)", n)
	}
}

// TestRootFullRingBufferCountsLostEvents: events that do not fit the ring buffer (nobody reads it) are
// counted, so the reader can show how many it missed.
func TestRootFullRingBufferCountsLostEvents(t *testing.T) {
	h := newHarnessSized(t, config.MapSizes{Conntrack: 65536, Events: 4096}, nodeA, cidrA, maps.ModeTunnel)
	h.setSampling(1, 0, 0)
	h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, maps.SvcExternalLocal,
		backend{addr: podB, port: 8080, node: nodeB})
	const sent = 200 // 48-byte records: about 85 fit in 4096 bytes
	for i := range sent {
		h.runPkt(h.d.Programs.FromNetdev, tcp(client, uint16(40000+i), nodeA, 30081, tcpSYN), actShot)
	}
	got := len(dropEvents(h.drainEvents()))
	c, err := h.d.Maps.ReadMetrics()
	must(t, err)
	if got == 0 || got == sent || uint64(got)+c.EventsLost != sent {
		t.Fatalf("%d events read + %d counted lost, want %d in all with some lost", got, c.EventsLost, sent)
	}
}

// BenchmarkRootNewFlowEventCost measures what the agent's default event rate (one event per new flow)
// costs on from_netdev's new-flow path (service lookup, backend pick, conntrack insert, encapsulation),
// against no events, with a reader draining the ring buffer as the agent does. Rates alternate within
// every iteration so a noisy neighbour hits both alike; reported: the median ns per new flow of each and
// the median of the paired differences.
func BenchmarkRootNewFlowEventCost(b *testing.B) {
	h := newHarness(b, nodeA, cidrA, maps.ModeTunnel)
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
		backend{addr: podB, port: 8080, node: nodeB})
	go func() {
		for {
			if _, err := h.events.Read(); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return // closed at cleanup
			}
		}
	}()
	const flows = 20_000
	run := func(rate uint32, round int) float64 {
		h.setSampling(rate, 0, 0)
		var total time.Duration
		for f := range flows {
			src := netip.AddrFrom4([4]byte{198, 18, byte(f >> 8), byte(f)})
			data := tcp(src, uint16(1024+2*round+int(rate)), nodeA, 30080, tcpSYN).bytes()
			ret, d, err := h.d.Programs.FromNetdev.Benchmark(data, 1, nil)
			if err != nil || ret != actRedirect {
				b.Fatalf("verdict %d: %v", ret, err)
			}
			total += d
		}
		return float64(total.Nanoseconds()) / flows
	}
	var off, on, diff []float64
	for i := 0; b.Loop(); i++ {
		a, c := run(0, i), run(1, i)
		off, on, diff = append(off, a), append(on, c), append(diff, c-a)
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(off), "ns/flow@sample0")
	b.ReportMetric(med(on), "ns/flow@sample1")
	b.ReportMetric(med(diff), "ns/flow-event-cost")
}
