package bpf_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// ctEntry reads one conntrack entry.
func (h *harness) ctEntry(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, proto, dir uint8) (maps.ConntrackValue, bool) {
	h.t.Helper()
	k := maps.ConntrackKey{SrcAddr: maps.Addr4(src), DstAddr: maps.Addr4(dst), SrcPort: sport, DstPort: dport,
		Proto: proto, Dir: dir}
	var v maps.ConntrackValue
	return v, h.ctMap(k).Lookup(&k, &v) == nil
}

// ctMap is the conntrack map that holds k (confirmed or new flows).
func (h *harness) ctMap(k maps.ConntrackKey) *ebpf.Map {
	var v maps.ConntrackValue
	if h.d.Maps.ConntrackNew.Lookup(&k, &v) == nil {
		return h.d.Maps.ConntrackNew
	}
	return h.d.Maps.Conntrack
}

// lifetime is how long the entry has left.
func lifetime(v maps.ConntrackValue) time.Duration {
	return time.Duration(int64(v.Expires) - int64(maps.MonotonicNow()))
}

// TestRootTCPHalfCloseKeepsFlow: a client that shut down its sending side
// (FIN) still waits for the backend's answer, which may take longer than the
// close lifetime; both entries of the flow keep their established lifetime
// until the backend closes too, and only then get the short one.
func TestRootTCPHalfCloseKeepsFlow(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod2)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0, backend{addr: pod2, port: 8080})
	fwd := func() maps.ConntrackValue {
		v, ok := h.ctEntry(client, 50000, nodeA, 30080, maps.ProtoTCP, maps.CTForward)
		if !ok {
			t.Fatal("forward entry gone")
		}
		return v
	}
	rep := func() maps.ConntrackValue {
		v, ok := h.ctEntry(pod2, 8080, client, 50000, maps.ProtoTCP, maps.CTReply)
		if !ok {
			t.Fatal("reply entry gone")
		}
		return v
	}
	fromBackend := func(flags uint8) {
		out := h.runPkt(p.FromContainer, tcp(pod2, 8080, client, 50000, flags), actRedirect)
		expect(t, out, nodeA, 30080, client, 50000)
	}
	fromClient := func(flags uint8) {
		out := h.runPkt(p.FromNetdev, tcp(client, 50000, nodeA, 30080, flags), actRedirect)
		expect(t, out, client, 50000, pod2, 8080)
	}
	fromClient(tcpSYN)
	fromBackend(tcpSYN | tcpACK)
	fromClient(tcpACK)
	fromBackend(tcpACK)

	// The client half-closes: the flow is still open in the other direction.
	fromClient(tcpFIN | tcpACK)
	for name, v := range map[string]maps.ConntrackValue{"forward": fwd(), "reply": rep()} {
		if l := lifetime(v); l < time.Hour {
			t.Errorf("%s entry after the client's FIN: lifetime %v (state %#x), want the established one", name, l, v.TCPState)
		}
		if v.TCPState&maps.TCPFinClient == 0 || v.TCPState&maps.TCPClosing != 0 {
			t.Errorf("%s entry after the client's FIN: state %#x, want half-closed", name, v.TCPState)
		}
	}
	fromBackend(tcpACK) // the answer, late
	fromClient(tcpACK)  // its acknowledgement reaches the same backend

	// The backend closes too: now the flow ends.
	fromBackend(tcpFIN | tcpACK)
	for name, v := range map[string]maps.ConntrackValue{"forward": fwd(), "reply": rep()} {
		if l := lifetime(v); l > maps.CTCloseTimeout {
			t.Errorf("%s entry after both FINs: lifetime %v, want at most %v", name, l, maps.CTCloseTimeout)
		}
		if v.TCPState&maps.TCPClosing == 0 {
			t.Errorf("%s entry after both FINs: state %#x, want closing", name, v.TCPState)
		}
	}
	fromClient(tcpACK) // the last ACK still goes through

	// An RST from either side ends the flow at once.
	h.runPkt(p.FromNetdev, tcp(client, 50001, nodeA, 30080, tcpSYN), actRedirect)
	h.runPkt(p.FromContainer, tcp(pod2, 8080, client, 50001, tcpSYN|tcpACK), actRedirect)
	h.runPkt(p.FromContainer, tcp(pod2, 8080, client, 50001, tcpRST|tcpACK), actRedirect)
	if v, _ := h.ctEntry(client, 50001, nodeA, 30080, maps.ProtoTCP, maps.CTForward); lifetime(v) > maps.CTCloseTimeout {
		t.Errorf("forward entry after the backend's RST: lifetime %v", lifetime(v))
	}
}

// TestRootTCPHalfCloseForwardOnlyEntry: the ingress node of a dsr NodePort
// flow never sees the backend's side, so it cannot see the flow end: after the
// client's FIN its entry lives a bounded time (renewed by every client
// packet) instead of the close lifetime or the established one.
func TestRootTCPHalfCloseForwardOnlyEntry(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeDSR)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
		backend{addr: podB, port: 8080, node: nodeB})
	for _, f := range []uint8{tcpSYN, tcpACK, tcpFIN | tcpACK} {
		h.runPkt(p.FromNetdev, tcp(client, 50000, nodeA, 30080, f), actRedirect)
	}
	v, _ := h.ctEntry(client, 50000, nodeA, 30080, maps.ProtoTCP, maps.CTForward)
	if l := lifetime(v); l <= maps.CTCloseTimeout || l > maps.CTFinWaitTimeout {
		t.Errorf("forward-only entry after the client's FIN: lifetime %v, want (%v, %v]", l,
			maps.CTCloseTimeout, maps.CTFinWaitTimeout)
	}
}

// TestRootConntrackEntriesExpireTogether: a UDP flow silent in one direction
// keeps both entries while the other direction is active (the backend's
// replies must still be translated after 120 s of client-only traffic, and
// the other way round).
func TestRootConntrackEntriesExpireTogether(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod2)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 1, 0, backend{addr: pod2, port: 5353})
	h.runPkt(p.FromNetdev, udp(client, 50000, nodeA, 30053), actRedirect)
	fk := maps.ConntrackKey{SrcAddr: maps.Addr4(client), DstAddr: maps.Addr4(nodeA), SrcPort: 50000, DstPort: 30053,
		Proto: maps.ProtoUDP, Dir: maps.CTForward}
	rk := maps.ConntrackKey{SrcAddr: maps.Addr4(pod2), DstAddr: maps.Addr4(client), SrcPort: 5353, DstPort: 50000,
		Proto: maps.ProtoUDP, Dir: maps.CTReply}
	// age sets both entries as they are after d of silence.
	age := func(d time.Duration) {
		for _, k := range []maps.ConntrackKey{fk, rk} {
			var v maps.ConntrackValue
			m := h.ctMap(k)
			must(t, m.Lookup(&k, &v))
			v.Expires = maps.MonotonicNow() + uint64(maps.CTUDPTimeout-d)
			must(t, m.Put(&k, &v))
		}
	}
	left := func(k maps.ConntrackKey) time.Duration {
		var v maps.ConntrackValue
		must(t, h.ctMap(k).Lookup(&k, &v))
		return lifetime(v)
	}
	// 110 s of silence, then the client sends: the reply entry lives on.
	age(110 * time.Second)
	h.runPkt(p.FromNetdev, udp(client, 50000, nodeA, 30053), actRedirect)
	if l := left(rk); l < maps.CTUDPTimeout-5*time.Second {
		t.Errorf("reply entry after a client packet: lifetime %v, want about %v", l, maps.CTUDPTimeout)
	}
	// The same for the backend's side.
	age(110 * time.Second)
	out := h.runPkt(p.FromContainer, udp(pod2, 5353, client, 50000), actRedirect)
	expect(t, out, nodeA, 30053, client, 50000)
	if l := left(fk); l < maps.CTUDPTimeout-5*time.Second {
		t.Errorf("forward entry after a backend packet: lifetime %v, want about %v", l, maps.CTUDPTimeout)
	}
}

// TestRootReplyTupleCollisionBothFlowsWork: the same client address and port
// to two frontends translated to one backend (two node addresses of one
// NodePort, a ClusterIP and a NodePort) give one reply tuple. Both
// connections must work, as with kube-proxy (nf_conntrack's NAT gives the
// second flow another source port): bytes both ways, every reply leaving with
// its own frontend as source and the client's own port as destination, the
// later packets of each flow keeping their translation, and ICMP errors about
// the second flow quoting what the client sent.
func TestRootReplyTupleCollisionBothFlowsWork(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
	p := h.d.Programs
	other := netip.MustParseAddr("192.168.50.3") // a second address of this node
	must(t, h.d.Maps.AddNodeAddr(other))
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0, backend{addr: pod2, port: 8080})

	// flow sends the client's packet through prog and returns the source
	// port the backend sees (the client's address and the payload are kept).
	flow := func(prog *ebpf.Program, in packet, be netip.Addr, bport uint16) uint16 {
		t.Helper()
		out := h.runPkt(prog, in, actRedirect)
		if out.Src != in.Src || out.Dst != be || out.DstPort != bport || string(out.Payload) != string(in.Payload) {
			t.Fatalf("%s:%d -> %s:%d %q arrived as %s:%d -> %s:%d %q", in.Src, in.SrcPort, in.Dst, in.DstPort,
				in.Payload, out.Src, out.SrcPort, out.Dst, out.DstPort, out.Payload)
		}
		return out.SrcPort
	}
	// reply sends the backend's answer to port and checks what the client gets.
	reply := func(rep packet, front netip.Addr, fport uint16, cport uint16) {
		t.Helper()
		out := h.runPkt(p.FromContainer, rep, actRedirect)
		expect(t, out, front, fport, rep.Dst, cport)
		if string(out.Payload) != string(rep.Payload) {
			t.Fatalf("reply payload %q, want %q", out.Payload, rep.Payload)
		}
	}

	p1 := flow(p.FromNetdev, tcp(client, 50000, nodeA, 30080, tcpSYN), pod2, 8080)
	p2 := flow(p.FromNetdev, tcp(client, 50000, other, 30080, tcpSYN), pod2, 8080)
	if p1 != 50000 || p2 == p1 {
		t.Fatalf("the backend sees source ports %d and %d, want 50000 and another one", p1, p2)
	}
	reply(tcp(pod2, 8080, client, p1, tcpSYN|tcpACK), nodeA, 30080, 50000)
	reply(tcp(pod2, 8080, client, p2, tcpSYN|tcpACK), other, 30080, 50000)
	for i := 0; i < 2; i++ {
		if got := flow(p.FromNetdev, tcp(client, 50000, other, 30080, tcpACK), pod2, 8080); got != p2 {
			t.Fatalf("next packet of the second flow left with port %d, want %d", got, p2)
		}
		if got := flow(p.FromNetdev, tcp(client, 50000, nodeA, 30080, tcpACK), pod2, 8080); got != p1 {
			t.Fatalf("next packet of the first flow left with port %d, want %d", got, p1)
		}
		reply(tcp(pod2, 8080, client, p2, tcpACK), other, 30080, 50000)
		reply(tcp(pod2, 8080, client, p1, tcpACK), nodeA, 30080, 50000)
	}
	if n := h.metric("ct_collision"); n != 0 {
		t.Errorf("ct_collision = %d, want 0", n)
	}
	// Both entries of the second flow live and close together.
	h.runPkt(p.FromNetdev, tcp(client, 50000, other, 30080, tcpRST), actRedirect)
	if v, ok := h.ctEntry(pod2, 8080, client, p2, maps.ProtoTCP, maps.CTReply); !ok || lifetime(v) > maps.CTCloseTimeout {
		t.Errorf("reply entry of the second flow after the client's RST: %v, lifetime %v", ok, lifetime(v))
	}

	// UDP, with an ICMP error from the backend about the second flow.
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 2, 0, backend{addr: pod2, port: 5353})
	u1 := flow(p.FromNetdev, udp(client, 50001, nodeA, 30053), pod2, 5353)
	u2 := flow(p.FromNetdev, udp(client, 50001, other, 30053), pod2, 5353)
	if u1 != 50001 || u2 == u1 {
		t.Fatalf("UDP: the backend sees source ports %d and %d, want 50001 and another one", u1, u2)
	}
	reply(udp(pod2, 5353, client, u2), other, 30053, 50001)
	reply(udp(pod2, 5353, client, u1), nodeA, 30053, 50001)
	got := h.runPkt(p.FromContainer, icmpErr(pod2, client, udp(client, u2, pod2, 5353)), actRedirect)
	if got.Src != other || got.Dst != client {
		t.Fatalf("icmp %s -> %s, want %s -> %s", got.Src, got.Dst, other, client)
	}
	expectQuoted(t, got, client, 50001, other, 30053)

	// A pod reaching one backend through its ClusterIP and a NodePort with
	// the same source port (from_container, no socket hooks).
	vip := netip.MustParseAddr("10.96.0.20")
	h.service(svcKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), 1, 0, backend{addr: pod2, port: 8080})
	c1 := flow(p.FromContainer, tcp(pod1, 40000, vip, 80, tcpSYN), pod2, 8080)
	c2 := flow(p.FromContainer, tcp(pod1, 40000, nodeA, 30080, tcpSYN), pod2, 8080)
	if c1 != 40000 || c2 == c1 {
		t.Fatalf("pod client: the backend sees source ports %d and %d, want 40000 and another one", c1, c2)
	}
	if got := flow(p.FromContainer, tcp(pod1, 40000, nodeA, 30080, tcpACK), pod2, 8080); got != c2 {
		t.Fatalf("next packet of the pod's second flow left with port %d, want %d", got, c2)
	}
	reply(tcp(pod2, 8080, pod1, c2, tcpSYN|tcpACK), nodeA, 30080, 40000)
	reply(tcp(pod2, 8080, pod1, c1, tcpSYN|tcpACK), vip, 80, 40000)
}

// TestRootAffinityFollowsBackends: a ClientIP affinity entry only counts while
// its backend is still one of the service's: after the backend is removed,
// or the service deleted and its id reused by another service, the client
// gets a current backend (kube-proxy forgets affinity with the endpoint).
func TestRootAffinityFollowsBackends(t *testing.T) {
	pods := []netip.Addr{pod1, pod2, pod3}
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pods...)
	p := h.d.Programs
	key := svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal)
	h.service(key, 3, maps.SvcAffinity, backend{addr: pod1, port: 8080}, backend{addr: pod2, port: 8080})
	x := h.runPkt(p.FromNetdev, tcp(client, 50000, nodeA, 30080, tcpSYN), actRedirect).Dst
	y := pod1
	if x == pod1 {
		y = pod2
	}
	// x is removed: the table holds only y.
	must(t, h.d.Maps.UpdateBackend(maps.BackendKey{ServiceID: 3}, maps.BackendValue{Addr: maps.Addr4(y), Port: 8080, Flags: maps.BackendLocal}))
	must(t, h.d.Maps.UpdateService(key, maps.ServiceValue{ID: 3, Count: 1, LocalCount: 1, Flags: maps.SvcAffinity, AffinityTimeout: 10800}))
	must(t, h.d.Maps.DeleteBackend(maps.BackendKey{ServiceID: 3, Slot: 1}))
	if got := h.runPkt(p.FromNetdev, tcp(client, 50001, nodeA, 30080, tcpSYN), actRedirect).Dst; got != y {
		t.Fatalf("after its backend %s was removed the client went to %s, want %s", x, got, y)
	}
	// The service is deleted and id 3 given to another one (backend pod3).
	must(t, h.d.Maps.DeleteService(key))
	h.service(svcKey(netip.Addr{}, 30090, maps.ProtoTCP, maps.ScopeExternal), 3, maps.SvcAffinity, backend{addr: pod3, port: 9090})
	got := h.runPkt(p.FromNetdev, tcp(client, 50002, nodeA, 30090, tcpSYN), actRedirect)
	expect(t, got, client, 50002, pod3, 9090)
}

// TestRootUDPFlowFollowsReplacedBackend: a UDP client that keeps its source
// port (DNS resolvers, game and VoIP clients, syslog) reaches the new
// backend with its next datagram when the agent replaces the old one, or
// moves the Service's targetPort; its flow does not stick to the removed
// endpoint (or to whatever pod reuses its address). TCP flows keep their
// backend (a terminating endpoint finishes its connections). A deleted
// Service stops translating at once.
func TestRootUDPFlowFollowsReplacedBackend(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
	p := h.d.Programs
	prog := agent.NewProgrammer(h.d.Maps)
	udpKey := svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal)
	tcpKey := svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal)
	apply := func(addr netip.Addr, port uint16) {
		t.Helper()
		b := []maps.BackendValue{{Addr: maps.Addr4(addr), Port: port, Flags: maps.BackendLocal}}
		st := agent.ServiceState{Ports: []agent.PortState{
			{Name: "ns/dns:53/UDP", Frontends: map[maps.ServiceKey]uint32{udpKey: 0}, All: b, Local: b},
			{Name: "ns/dns:80/TCP", Frontends: map[maps.ServiceKey]uint32{tcpKey: 0}, All: b, Local: b},
		}}
		must(t, prog.Apply("ns/dns", st))
	}
	send := func() packet {
		return h.runPkt(p.FromNetdev, udp(client, 50000, nodeA, 30053), actRedirect)
	}
	apply(pod1, 5353)
	expect(t, send(), client, 50000, pod1, 5353)
	h.runPkt(p.FromNetdev, tcp(client, 50000, nodeA, 30080, tcpSYN), actRedirect)

	apply(pod2, 5353) // pod1 replaced by pod2
	expect(t, send(), client, 50000, pod2, 5353)
	out := h.runPkt(p.FromContainer, udp(pod2, 5353, client, 50000), actRedirect)
	expect(t, out, nodeA, 30053, client, 50000)
	got := h.runPkt(p.FromNetdev, tcp(client, 50000, nodeA, 30080, tcpACK), actRedirect)
	expect(t, got, client, 50000, pod1, 5353) // the TCP flow keeps its (terminating) backend

	apply(pod2, 5354) // targetPort changed
	expect(t, send(), client, 50000, pod2, 5354)

	must(t, prog.Apply("ns/dns", agent.ServiceState{}))
	h.runPkt(p.FromNetdev, udp(client, 50000, nodeA, 30053), actOK)
}

// TestRootSYNFloodKeepsEstablishedFlows: a SYN flood (many new flows that
// never complete their handshake) against a NodePort must not push
// established flows out of a small conntrack table: after the flood the
// backends' data on every established connection still reaches the client
// from the frontend, the client's next segments still reach the same backend,
// and a new connection still works.
func TestRootSYNFloodKeepsEstablishedFlows(t *testing.T) {
	const size, established, flood = 2048, 40, 8192
	h := newHarnessSized(t, config.MapSizes{Conntrack: size, ConntrackNew: size}, nodeA, cidrA, maps.ModeTunnel, pod1, pod2, pod3)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
		backend{addr: pod1, port: 8080}, backend{addr: pod2, port: 8080}, backend{addr: pod3, port: 8080})

	// handshake opens a connection from client:port and returns its backend.
	handshake := func(port uint16) netip.Addr {
		t.Helper()
		be := h.runPkt(p.FromNetdev, tcp(client, port, nodeA, 30080, tcpSYN), actRedirect).Dst
		out := h.runPkt(p.FromContainer, tcp(be, 8080, client, port, tcpSYN|tcpACK), actRedirect)
		expect(t, out, nodeA, 30080, client, port)
		h.runPkt(p.FromNetdev, tcp(client, port, nodeA, 30080, tcpACK), actRedirect)
		return be
	}
	backends := map[uint16]netip.Addr{}
	for i := uint16(0); i < established; i++ {
		backends[40000+i] = handshake(40000 + i)
	}

	// The flood: SYNs from many source ports, each answered by its backend
	// (a SYN-ACK, as with SYN cookies) but never completed by the client.
	// The established connections stay idle meanwhile.
	syn := tcp(client, 0, nodeA, 30080, tcpSYN)
	for i := 0; i < flood; i++ {
		syn.SrcPort = 1024 + uint16(i)
		ret, out := h.run(p.FromNetdev, syn.bytes())
		if ret != actRedirect {
			t.Fatalf("flood SYN %d: verdict %d, want %d (new flows must never be refused)", i, ret, actRedirect)
		}
		in, err := decode(out)
		must(t, err)
		if ret, _ := h.run(p.FromContainer, tcp(in.Dst, 8080, syn.Src, syn.SrcPort, tcpSYN|tcpACK).bytes()); ret != actRedirect {
			t.Fatalf("flood SYN-ACK %d: verdict %d, want %d (reverse NAT of a new flow)", i, ret, actRedirect)
		}
	}

	for port, be := range backends {
		data := tcp(be, 8080, client, port, tcpACK)
		data.Payload = []byte("server data")
		ret, raw := h.run(p.FromContainer, data.bytes())
		if ret != actRedirect {
			t.Fatalf("after the flood the backend's data on connection %d: verdict %d, want %d (its reply entry is gone: it would leave untranslated)",
				port, ret, actRedirect)
		}
		out, err := decode(raw)
		must(t, err)
		if out.Src != nodeA || out.SrcPort != 30080 || out.Dst != client || out.DstPort != port || string(out.Payload) != "server data" {
			t.Fatalf("after the flood the backend's data on connection %d left as %s:%d -> %s:%d %q, want from %s:30080",
				port, out.Src, out.SrcPort, out.Dst, out.DstPort, out.Payload, nodeA)
		}
		out = h.runPkt(p.FromNetdev, tcp(client, port, nodeA, 30080, tcpACK), actRedirect)
		expect(t, out, client, port, be, 8080)
	}
	handshake(50000)
}

// TestRootConntrackEvictionsCounted floods a small kd_ct_new with flows nobody
// completes: the LRU table makes room by evicting, and ConntrackEvictions
// must report exactly the entries that went missing (every flow's entries
// less the ones the table still holds), while removals by the agent (a
// backend's flows deleted) and promotions to kd_conntrack are not counted as
// evictions. A table with room evicts nothing.
func TestRootConntrackEvictionsCounted(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      uint32
		wantEvict bool
	}{{"full", 512, true}, {"room", 65536, false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessSized(t, config.MapSizes{Conntrack: tc.size, ConntrackNew: tc.size}, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
			p := h.d.Programs
			h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
				backend{addr: pod1, port: 8080}, backend{addr: pod2, port: 8080})
			entries := func() int {
				t.Helper()
				n, err := h.d.Maps.ConntrackCount()
				must(t, err)
				return n
			}
			evictions := func() map[string]int64 {
				t.Helper()
				tables, err := h.d.Maps.ConntrackGCTables()
				must(t, err)
				ev, err := h.d.Maps.ConntrackEvictions(tables)
				must(t, err)
				return ev
			}

			// One completed connection (promoted to kd_conntrack), and how many
			// entries one new flow takes.
			h.runPkt(p.FromNetdev, tcp(client, 40000, nodeA, 30080, tcpSYN), actRedirect)
			perFlow := entries()
			h.runPkt(p.FromNetdev, tcp(client, 40000, nodeA, 30080, tcpACK), actRedirect)
			if n := entries(); n != perFlow {
				t.Fatalf("promotion changed the entries from %d to %d", perFlow, n)
			}

			const flood = 4096
			syn := tcp(client, 0, nodeA, 30080, tcpSYN)
			for i := 0; i < flood; i++ {
				syn.SrcPort = 1024 + uint16(i)
				if ret, _ := h.run(p.FromNetdev, syn.bytes()); ret != actRedirect {
					t.Fatalf("flood SYN %d: verdict %d, want %d", i, ret, actRedirect)
				}
			}
			// The agent removes the flows of a backend: not evictions.
			removed, err := h.d.Maps.DeleteConntrackForBackend(pod1, 8080, maps.ProtoTCP)
			must(t, err)
			if removed == 0 {
				t.Fatal("no entries of pod1's flows to remove")
			}
			ev := evictions()
			want := int64((flood+1)*perFlow - removed - entries())
			got := ev[maps.ConntrackTableNew] + ev[maps.ConntrackTableEstablished]
			if got != want {
				t.Fatalf("evictions %v (sum %d), want %d: %d flows of %d entries added, %d removed by the agent, %d still there",
					ev, got, want, flood+1, perFlow, removed, entries())
			}
			if tc.wantEvict != (got > 0) {
				t.Fatalf("evictions %d with tables of %d entries and %d flows", got, tc.size, flood+1)
			}
		})
	}
}
