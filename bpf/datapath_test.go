package bpf_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// TestRootClusterIP: pod -> ClusterIP, local and remote backend, TCP and UDP,
// DNAT in from_container and reverse NAT of the reply.
func TestRootClusterIP(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
	p := h.d.Programs
	h.service(svcKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), 1, 0, backend{addr: pod2, port: 8080})
	h.service(svcKey(vip, 53, maps.ProtoUDP, maps.ScopeCluster), 2, 0, backend{addr: pod2, port: 5353})
	h.service(svcKey(vip, 81, maps.ProtoTCP, maps.ScopeCluster), 3, 0, backend{addr: podB, port: 8080, node: nodeB})

	t.Run("tcp local backend", func(t *testing.T) {
		got := h.runPkt(p.FromContainer, tcp(pod1, 40000, vip, 80, tcpSYN), actRedirect)
		expect(t, got, pod1, 40000, pod2, 8080)
		expectMACs(t, got, podMAC(pod2), hostMAC)
		if string(got.Payload) != "hello" || got.Seq != 1000 {
			t.Fatalf("payload/seq changed: %q %d", got.Payload, got.Seq)
		}
		// Reply from the backend, on its own veth: source becomes the ClusterIP.
		rep := h.runPkt(p.FromContainer, tcp(pod2, 8080, pod1, 40000, tcpSYN|tcpACK), actRedirect)
		expect(t, rep, vip, 80, pod1, 40000)
		expectMACs(t, rep, podMAC(pod1), hostMAC)
		// Next packet of the flow keeps the translation.
		got = h.runPkt(p.FromContainer, tcp(pod1, 40000, vip, 80, tcpACK), actRedirect)
		expect(t, got, pod1, 40000, pod2, 8080)
	})
	t.Run("udp local backend", func(t *testing.T) {
		got := h.runPkt(p.FromContainer, udp(pod1, 40001, vip, 53), actRedirect)
		expect(t, got, pod1, 40001, pod2, 5353)
		rep := h.runPkt(p.FromContainer, udp(pod2, 5353, pod1, 40001), actRedirect)
		expect(t, rep, vip, 53, pod1, 40001)
	})
	t.Run("icmp error from the backend is reverse-NATed", func(t *testing.T) {
		e := icmpErr(pod2, pod1, udp(pod1, 40001, pod2, 5353))
		got := h.runPkt(p.FromContainer, e, actRedirect)
		if got.Src != vip || got.Dst != pod1 || got.ICMPType != 3 {
			t.Fatalf("icmp %s -> %s type %d", got.Src, got.Dst, got.ICMPType)
		}
		expectQuoted(t, got, pod1, 40001, vip, 53)
		expectMACs(t, got, podMAC(pod1), hostMAC)
		// An error about something else passes untouched.
		other := h.runPkt(p.FromContainer, icmpErr(pod2, pod1, udp(pod1, 1, pod2, 2)), actRedirect)
		expectQuoted(t, other, pod1, 1, pod2, 2)
	})
	t.Run("udp zero checksum stays zero", func(t *testing.T) {
		b := udp(pod1, 40002, vip, 53).bytes()
		b[14+20+6], b[14+20+7] = 0, 0
		ret, out := h.run(p.FromContainer, b)
		if ret != actRedirect {
			t.Fatalf("verdict %d", ret)
		}
		if out[14+20+6] != 0 || out[14+20+7] != 0 {
			t.Fatalf("zero UDP checksum became %x", out[40:42])
		}
		got, err := decode(out)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, got, pod1, 40002, pod2, 5353)
	})
	t.Run("remote backend through the overlay", func(t *testing.T) {
		h.drainEvents()
		got := h.runPkt(p.FromContainer, tcp(pod1, 40003, vip, 81, tcpSYN), actRedirect)
		expect(t, got, pod1, 40003, podB, 8080)
		if peers := h.encapPeers(); len(peers) != 1 || peers[0] != nodeB {
			t.Fatalf("tunnel peers %v, want [%s]", peers, nodeB)
		}
		// The reply comes back decapsulated on the vxlan device.
		rep := h.runPkt(p.FromOverlay, tcp(podB, 8080, pod1, 40003, tcpSYN|tcpACK), actRedirect)
		expect(t, rep, vip, 81, pod1, 40003)
		expectMACs(t, rep, podMAC(pod1), hostMAC)
	})
	t.Run("to_container reverse NAT (reply through the stack)", func(t *testing.T) {
		h.runPkt(p.FromContainer, tcp(pod1, 40004, vip, 80, tcpSYN), actRedirect)
		rep := h.runPkt(p.ToContainer, tcp(pod2, 8080, pod1, 40004, tcpSYN|tcpACK), actOK)
		expect(t, rep, vip, 80, pod1, 40004)
	})
	t.Run("pod to this node's NodePort", func(t *testing.T) {
		h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 4, 0, backend{addr: pod2, port: 8080})
		got := h.runPkt(p.FromContainer, tcp(pod1, 40005, nodeA, 30080, tcpSYN), actRedirect)
		expect(t, got, pod1, 40005, pod2, 8080)
		rep := h.runPkt(p.FromContainer, tcp(pod2, 8080, pod1, 40005, tcpSYN|tcpACK), actRedirect)
		expect(t, rep, nodeA, 30080, pod1, 40005)
		// Another node's NodePort is left to the stack (that node translates).
		h.runPkt(p.FromContainer, tcp(pod1, 40006, nodeB, 30080, tcpSYN), actOK)
	})
	if h.metric("dnat") == 0 || h.metric("revnat") == 0 || h.metric("local") == 0 {
		t.Fatalf("metrics not counted: %+v", h.metric("dnat"))
	}
}

// TestRootHairpin: a pod reaching its own Service lands on itself; the source
// is SNATed to the hairpin address and restored on the reply.
func TestRootHairpin(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1)
	p := h.d.Programs
	h.service(svcKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), 1, 0, backend{addr: pod1, port: 8080})
	got := h.runPkt(p.FromContainer, tcp(pod1, 40000, vip, 80, tcpSYN), actRedirect)
	expect(t, got, maps.DefaultHairpinAddr, 40000, pod1, 8080)
	expectMACs(t, got, podMAC(pod1), hostMAC)
	rep := h.runPkt(p.FromContainer, tcp(pod1, 8080, maps.DefaultHairpinAddr, 40000, tcpSYN|tcpACK), actRedirect)
	expect(t, rep, vip, 80, pod1, 40000)
	got = h.runPkt(p.FromContainer, tcp(pod1, 40000, vip, 80, tcpACK), actRedirect)
	expect(t, got, maps.DefaultHairpinAddr, 40000, pod1, 8080)
}

// TestRootPodToPod: same node delivery and cross-node encapsulation.
func TestRootPodToPod(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
	p := h.d.Programs
	got := h.runPkt(p.FromContainer, tcp(pod1, 40000, pod2, 80, tcpSYN), actRedirect)
	expect(t, got, pod1, 40000, pod2, 80)
	expectMACs(t, got, podMAC(pod2), hostMAC)

	h.drainEvents()
	got = h.runPkt(p.FromContainer, udp(pod1, 40000, podB, 53), actRedirect)
	expect(t, got, pod1, 40000, podB, 53)
	if peers := h.encapPeers(); len(peers) != 1 || peers[0] != nodeB {
		t.Fatalf("tunnel peers %v, want [%s]", peers, nodeB)
	}
	// Outside the pod CIDRs: to the stack, untouched.
	h.runPkt(p.FromContainer, tcp(pod1, 40000, netip.MustParseAddr("1.1.1.1"), 443, tcpSYN), actOK)

	// Receiving side: node B delivers to its pod.
	hb := newHarness(t, nodeB, cidrB, maps.ModeTunnel, podB)
	got = hb.runPkt(hb.d.Programs.FromOverlay, udp(pod1, 40000, podB, 53), actRedirect)
	expect(t, got, pod1, 40000, podB, 53)
	expectMACs(t, got, podMAC(podB), hostMAC)
}

// TestRootNodePortLocal: client -> node:nodePort with a backend on this node;
// client IP preserved; the reply leaves through the NIC with the node's
// address as source (FIB lookup for the MACs).
func TestRootNodePortLocal(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod2)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0, backend{addr: pod2, port: 8080})
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 2, 0, backend{addr: pod2, port: 5353})
	h.service(svcKey(extIP, 80, maps.ProtoTCP, maps.ScopeExternal), 3, 0, backend{addr: pod2, port: 8080})

	for _, tc := range []struct {
		name  string
		in    packet
		front netip.Addr
		fport uint16
		bport uint16
	}{
		{"tcp nodeport", tcp(client, 50000, nodeA, 30080, tcpSYN), nodeA, 30080, 8080},
		{"udp nodeport", udp(client, 50000, nodeA, 30053), nodeA, 30053, 5353},
		{"tcp externalIP", tcp(client, 50001, extIP, 80, tcpSYN), extIP, 80, 8080},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.drainEvents()
			got := h.runPkt(p.FromNetdev, tc.in, actRedirect)
			// One flow event for the new flow, with its translation.
			var flows []maps.Event
			for _, e := range h.drainEvents() {
				if e.Prog != 0 {
					flows = append(flows, e)
				}
			}
			if len(flows) != 1 || flows[0].Prog != maps.ProgFromNetdev || flows[0].Verdict != maps.MetricDNAT ||
				netip.AddrFrom4(flows[0].NATAddr) != pod2 || flows[0].NATPort != tc.bport ||
				netip.AddrFrom4(flows[0].SrcAddr) != client || flows[0].DstPort != tc.in.DstPort {
				t.Fatalf("flow events %+v", flows)
			}
			expect(t, got, client, tc.in.SrcPort, pod2, tc.bport)
			expectMACs(t, got, podMAC(pod2), hostMAC)
			rep := tc.in
			rep.Src, rep.SrcPort, rep.Dst, rep.DstPort = pod2, tc.bport, client, tc.in.SrcPort
			if rep.Proto == 6 {
				rep.TCPFlags = tcpSYN | tcpACK
			}
			out := h.runPkt(p.FromContainer, rep, actRedirect)
			expect(t, out, tc.front, tc.fport, client, tc.in.SrcPort)
			expectMACs(t, out, clientMAC, h.ifMAC)
		})
	}
	t.Run("icmp error for a nodeport flow goes out to the client", func(t *testing.T) {
		got := h.runPkt(p.FromContainer, icmpErr(pod2, client, udp(client, 50000, pod2, 5353)), actRedirect)
		if got.Src != nodeA || got.Dst != client {
			t.Fatalf("icmp %s -> %s", got.Src, got.Dst)
		}
		expectQuoted(t, got, client, 50000, nodeA, 30053)
		expectMACs(t, got, clientMAC, h.ifMAC)
	})
	t.Run("nodeport on a foreign address is not ours", func(t *testing.T) {
		h.runPkt(p.FromNetdev, tcp(client, 50002, netip.MustParseAddr("192.168.50.77"), 30080, tcpSYN), actOK)
	})
	t.Run("unknown port passes", func(t *testing.T) {
		h.runPkt(p.FromNetdev, tcp(client, 50003, nodeA, 22, tcpSYN), actOK)
	})
	t.Run("vxlan traffic passes", func(t *testing.T) {
		h.runPkt(p.FromNetdev, udp(nodeB, 40000, nodeA, 8472), actOK)
	})
}

// TestRootNodePortHostNetBackend: a host-network backend on this node; the
// reply leaves through the stack and is reverse-NATed by to_netdev.
func TestRootNodePortHostNetBackend(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30443, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
		backend{addr: nodeA, port: 6443, hostnet: true})
	got := h.runPkt(p.FromNetdev, tcp(client, 50000, nodeA, 30443, tcpSYN), actOK)
	expect(t, got, client, 50000, nodeA, 6443)
	rep := h.runPkt(p.ToNetdev, tcp(nodeA, 6443, client, 50000, tcpSYN|tcpACK), actOK)
	expect(t, rep, nodeA, 30443, client, 50000)
}

// remoteNodePort runs the whole remote-backend walk: client -> A:30080,
// backend only on B. It returns the harnesses for A and B.
func remoteNodePort(t *testing.T, mode uint8, proto uint8) (*harness, *harness) {
	ha := newHarness(t, nodeA, cidrA, maps.ModeTunnel)
	hb := newHarness(t, nodeB, cidrB, mode, podB)
	key := svcKey(netip.Addr{}, 30080, proto, maps.ScopeExternal)
	ha.service(key, 1, 0, backend{addr: podB, port: 8080, node: nodeB})
	hb.service(key, 1, 0, backend{addr: podB, port: 8080})
	mk := func(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, fl uint8) packet {
		if proto == maps.ProtoUDP {
			return udp(src, sport, dst, dport)
		}
		return tcp(src, sport, dst, dport, fl)
	}

	// 1-2. A forwards the original packet to B.
	in := mk(client, 50000, nodeA, 30080, tcpSYN)
	ha.drainEvents()
	fwd := ha.runPkt(ha.d.Programs.FromNetdev, in, actRedirect)
	expect(t, fwd, client, 50000, nodeA, 30080)
	if peers := ha.encapPeers(); len(peers) != 1 || peers[0] != nodeB {
		t.Fatalf("A tunnel peers %v, want [%s]", peers, nodeB)
	}
	// 3. B picks its local backend; the pod sees the client's address.
	got := hb.runPkt(hb.d.Programs.FromOverlay, fwd, actRedirect)
	expect(t, got, client, 50000, podB, 8080)
	expectMACs(t, got, podMAC(podB), hostMAC)
	var peer [4]byte
	must(t, hb.d.Maps.IterateConntrack(func(k maps.ConntrackKey, v maps.ConntrackValue) bool {
		if k.Dir == maps.CTReply {
			peer = v.TunnelPeer
		}
		return true
	}))
	if netip.AddrFrom4(peer) != nodeA {
		t.Fatalf("B conntrack tunnel peer %s, want %s", netip.AddrFrom4(peer), nodeA)
	}
	// 4. The reply.
	hb.drainEvents()
	rep := hb.runPkt(hb.d.Programs.FromContainer, mk(podB, 8080, client, 50000, tcpSYN|tcpACK), actRedirect)
	expect(t, rep, nodeA, 30080, client, 50000)
	if mode == maps.ModeTunnel {
		if peers := hb.encapPeers(); len(peers) != 1 || peers[0] != nodeA {
			t.Fatalf("B reply tunnel peers %v, want [%s]", peers, nodeA)
		}
		// A sends it out of its NIC to the client.
		out := ha.runPkt(ha.d.Programs.FromOverlay, rep, actRedirect)
		expect(t, out, nodeA, 30080, client, 50000)
		expectMACs(t, out, clientMAC, ha.ifMAC)
	} else {
		if peers := hb.encapPeers(); len(peers) != 0 {
			t.Fatalf("dsr reply was encapsulated to %v", peers)
		}
		expectMACs(t, rep, clientMAC, hb.ifMAC)
	}
	if proto == maps.ProtoUDP {
		// An ICMP error from the backend follows the reply path.
		hb.drainEvents()
		e := hb.runPkt(hb.d.Programs.FromContainer, icmpErr(podB, client, udp(client, 50000, podB, 8080)), actRedirect)
		expectQuoted(t, e, client, 50000, nodeA, 30080)
		if e.Src != nodeA || e.Dst != client {
			t.Fatalf("icmp %s -> %s", e.Src, e.Dst)
		}
		peers := hb.encapPeers()
		if mode == maps.ModeTunnel {
			if len(peers) != 1 || peers[0] != nodeA {
				t.Fatalf("icmp tunnel peers %v", peers)
			}
			out := ha.runPkt(ha.d.Programs.FromOverlay, e, actRedirect)
			expectMACs(t, out, clientMAC, ha.ifMAC)
			expectQuoted(t, out, client, 50000, nodeA, 30080)
		} else if len(peers) != 0 {
			t.Fatalf("dsr icmp encapsulated to %v", peers)
		}
	}
	// Next packets stick to the same path.
	fwd = ha.runPkt(ha.d.Programs.FromNetdev, mk(client, 50000, nodeA, 30080, tcpACK), actRedirect)
	expect(t, fwd, client, 50000, nodeA, 30080)
	got = hb.runPkt(hb.d.Programs.FromOverlay, fwd, actRedirect)
	expect(t, got, client, 50000, podB, 8080)
	return ha, hb
}

func TestRootNodePortRemoteTunnel(t *testing.T) {
	t.Run("tcp", func(t *testing.T) { remoteNodePort(t, maps.ModeTunnel, maps.ProtoTCP) })
	t.Run("udp", func(t *testing.T) { remoteNodePort(t, maps.ModeTunnel, maps.ProtoUDP) })
}

func TestRootNodePortRemoteDSR(t *testing.T) {
	t.Run("tcp", func(t *testing.T) { remoteNodePort(t, maps.ModeDSR, maps.ProtoTCP) })
	t.Run("udp", func(t *testing.T) { remoteNodePort(t, maps.ModeDSR, maps.ProtoUDP) })
}

// TestRootServiceModeOverride: a per-service dsr flag wins over the node default.
func TestRootServiceModeOverride(t *testing.T) {
	hb := newHarness(t, nodeB, cidrB, maps.ModeTunnel, podB)
	hb.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, maps.SvcDSR, backend{addr: podB, port: 8080})
	hb.runPkt(hb.d.Programs.FromOverlay, tcp(client, 50000, nodeA, 30080, tcpSYN), actRedirect)
	hb.drainEvents()
	rep := hb.runPkt(hb.d.Programs.FromContainer, tcp(podB, 8080, client, 50000, tcpSYN|tcpACK), actRedirect)
	expect(t, rep, nodeA, 30080, client, 50000)
	expectMACs(t, rep, clientMAC, hb.ifMAC)
	if peers := hb.encapPeers(); len(peers) != 0 {
		t.Fatalf("dsr service reply encapsulated to %v", peers)
	}
}

// TestRootExternalTrafficPolicyLocal: only local backends, never forwarded.
func TestRootExternalTrafficPolicyLocal(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod2)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, maps.SvcExternalLocal,
		backend{addr: podB, port: 8080, node: nodeB}, backend{addr: pod2, port: 8080}, backend{addr: podB2, port: 8080, node: nodeB})
	h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, maps.SvcExternalLocal,
		backend{addr: podB, port: 8080, node: nodeB})
	for i := 0; i < 20; i++ {
		got := h.runPkt(p.FromNetdev, tcp(client, uint16(51000+i), nodeA, 30080, tcpSYN), actRedirect)
		expect(t, got, client, uint16(51000+i), pod2, 8080)
	}
	if peers := h.encapPeers(); len(peers) != 0 {
		t.Fatalf("eTP Local flow forwarded to %v", peers)
	}
	h.runPkt(p.FromNetdev, tcp(client, 52000, nodeA, 30081, tcpSYN), actShot)
	if n := h.metric("no_local_backend"); n != 1 {
		t.Fatalf("no_local_backend drops = %d, want 1", n)
	}
	// On the backend side, forwarded flows also use local backends only.
	hb := newHarness(t, nodeB, cidrB, maps.ModeTunnel)
	hb.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, 0, backend{addr: pod2, port: 8080, node: nodeA})
	hb.runPkt(hb.d.Programs.FromOverlay, tcp(client, 52000, nodeA, 30081, tcpSYN), actShot)
}

// TestRootInternalTrafficPolicyLocal: ClusterIP with iTP Local only uses local backends.
func TestRootInternalTrafficPolicyLocal(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
	h.service(svcKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), 1, maps.SvcInternalLocal,
		backend{addr: podB, port: 8080, node: nodeB}, backend{addr: pod2, port: 8080})
	for i := 0; i < 20; i++ {
		got := h.runPkt(h.d.Programs.FromContainer, tcp(pod1, uint16(40000+i), vip, 80, tcpSYN), actRedirect)
		expect(t, got, pod1, uint16(40000+i), pod2, 8080)
	}
}

// TestRootNoEndpoints: TCP gets a RST, UDP an ICMP port unreachable, both
// counted as no_backend; without the reject flag the packet is dropped.
func TestRootNoEndpoints(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, maps.SvcReject)
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 2, maps.SvcReject)
	h.service(svcKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), 3, maps.SvcReject)
	h.service(svcKey(vip, 81, maps.ProtoTCP, maps.ScopeCluster), 4, 0)

	t.Run("tcp syn gets rst+ack", func(t *testing.T) {
		in := tcp(client, 50000, nodeA, 30080, tcpSYN)
		in.SrcMAC = clientMAC
		in.DstMAC = h.ifMAC
		got := h.runPkt(p.FromNetdev, in, actRedirect)
		expect(t, got, nodeA, 30080, client, 50000)
		expectMACs(t, got, clientMAC, h.ifMAC)
		if got.TCPFlags != tcpRST|tcpACK || got.Seq != 0 || got.Ack != 1000+5+1 || len(got.Payload) != 0 {
			t.Fatalf("rst flags %#x seq %d ack %d payload %d", got.TCPFlags, got.Seq, got.Ack, len(got.Payload))
		}
	})
	t.Run("tcp ack gets rst with its ack as seq", func(t *testing.T) {
		in := tcp(pod1, 40000, vip, 80, tcpACK)
		in.Ack = 777
		got := h.runPkt(p.FromContainer, in, actRedirect)
		expect(t, got, vip, 80, pod1, 40000)
		if got.TCPFlags != tcpRST || got.Seq != 777 {
			t.Fatalf("rst flags %#x seq %d", got.TCPFlags, got.Seq)
		}
	})
	t.Run("udp gets icmp port unreachable", func(t *testing.T) {
		in := udp(client, 50000, nodeA, 30053)
		raw := in.bytes()
		got := h.runPkt(p.FromNetdev, in, actRedirect)
		if got.Proto != 1 || got.ICMPType != 3 || got.ICMPCode != 3 || got.Src != nodeA || got.Dst != client {
			t.Fatalf("icmp %+v", got)
		}
		if string(got.Payload) != string(raw[14:14+28]) {
			t.Fatalf("icmp quotes %x, want %x", got.Payload, raw[14:14+28])
		}
	})
	t.Run("without reject flag: drop", func(t *testing.T) {
		h.runPkt(p.FromContainer, tcp(pod1, 40001, vip, 81, tcpSYN), actShot)
	})
	t.Run("a rst is never answered", func(t *testing.T) {
		h.runPkt(p.FromNetdev, tcp(client, 50001, nodeA, 30080, tcpRST), actShot)
	})
	if n := h.metric("no_backend"); n != 5 {
		t.Fatalf("no_backend = %d, want 5", n)
	}
	if n := h.metric("reject"); n != 3 {
		t.Fatalf("reject = %d, want 3", n)
	}
}

// TestRootAffinityAndStickiness: ClientIP affinity keeps a client on one
// backend across flows; without it flows spread; a flow keeps its backend
// when the backend set changes.
func TestRootAffinityAndStickiness(t *testing.T) {
	pods := []netip.Addr{pod1, pod2, pod3, netip.MustParseAddr("10.244.1.13")}
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pods...)
	var bes []backend
	for _, a := range pods {
		bes = append(bes, backend{addr: a, port: 8080})
	}
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, maps.SvcAffinity, bes...)
	h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, 0, bes...)
	p := h.d.Programs

	seen := map[netip.Addr]bool{}
	for i := 0; i < 20; i++ {
		got := h.runPkt(p.FromNetdev, tcp(client, uint16(50000+i), nodeA, 30080, tcpSYN), actRedirect)
		seen[got.Dst] = true
	}
	if len(seen) != 1 {
		t.Fatalf("affinity: one client reached %d backends", len(seen))
	}
	// An affinity entry older than the service's timeout (1 s here) is
	// not honoured: with it expired before each flow, flows spread.
	key3 := svcKey(netip.Addr{}, 30082, maps.ProtoTCP, maps.ScopeExternal)
	h.service(key3, 3, maps.SvcAffinity, bes...)
	must(t, h.d.Maps.UpdateService(key3, maps.ServiceValue{ID: 3, Count: 4, Flags: maps.SvcAffinity, AffinityTimeout: 1}))
	seen = map[netip.Addr]bool{}
	ak := maps.AffinityKey{ServiceID: 3, Client: maps.Addr4(client)}
	for i := 0; i < 20; i++ {
		var av maps.AffinityValue
		if h.d.Maps.Affinity.Lookup(&ak, &av) == nil {
			av.LastUsed = maps.MonotonicNow() - uint64(1100*time.Millisecond)
			must(t, h.d.Maps.Affinity.Put(&ak, &av))
		}
		seen[h.runPkt(p.FromNetdev, tcp(client, uint16(53000+i), nodeA, 30082, tcpSYN), actRedirect).Dst] = true
	}
	if len(seen) < 2 {
		t.Fatalf("expired affinity still honoured: 20 flows all reached %v", seen)
	}
	seen = map[netip.Addr]bool{}
	first := map[uint16]netip.Addr{}
	for i := 0; i < 40; i++ {
		got := h.runPkt(p.FromNetdev, tcp(client, uint16(51000+i), nodeA, 30081, tcpSYN), actRedirect)
		seen[got.Dst] = true
		first[uint16(51000+i)] = got.Dst
	}
	if len(seen) < 2 {
		t.Fatalf("no affinity: 40 flows all reached %v", seen)
	}
	// Shrink the service to one backend: established flows keep theirs.
	h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 2, 0, bes[0])
	for sport, dst := range first {
		got := h.runPkt(p.FromNetdev, tcp(client, sport, nodeA, 30081, tcpACK), actRedirect)
		if got.Dst != dst {
			t.Fatalf("flow %d moved from %s to %s", sport, dst, got.Dst)
		}
	}
	// The agent flushes a removed backend's flows: they pick again.
	gone := first[51001]
	if gone == pod1 {
		gone = first[51002]
	}
	if gone != pod1 {
		n, err := h.d.Maps.DeleteConntrackForBackend(gone, 8080, maps.ProtoTCP)
		must(t, err)
		if n == 0 {
			t.Fatalf("no conntrack entries flushed for %s", gone)
		}
		for sport, dst := range first {
			if dst != gone {
				continue
			}
			if got := h.runPkt(p.FromNetdev, tcp(client, sport, nodeA, 30081, tcpACK), actRedirect); got.Dst != pod1 {
				t.Fatalf("flushed flow %d went to %s, want %s", sport, got.Dst, pod1)
			}
		}
	}
	// After FIN the flow ends; a new SYN on the same ports is a new flow.
	h.runPkt(p.FromNetdev, tcp(client, 51000, nodeA, 30081, tcpFIN|tcpACK), actRedirect)
	got := h.runPkt(p.FromNetdev, tcp(client, 51000, nodeA, 30081, tcpSYN), actRedirect)
	if got.Dst != pod1 {
		t.Fatalf("reused ports after FIN went to %s, want the only backend %s", got.Dst, pod1)
	}
}

// TestRootMalformedAndOtherTraffic: every tc program survives truncated and
// odd packets; non-IPv4 and unknown protocols pass.
func TestRootMalformedAndOtherTraffic(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod1)
	h.service(svcKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), 1, 0, backend{addr: pod1, port: 8080})
	good := tcp(pod1, 40000, vip, 80, tcpSYN).bytes()
	arp := append(append(append([]byte{}, hostMAC[:]...), anyMAC[:]...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	icmp := packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: pod1, Dst: vip, Proto: 1, ICMPType: 8}.bytes()
	sctp := packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: pod1, Dst: vip, Proto: 132, Payload: make([]byte, 12)}.bytes()
	frag := tcp(pod1, 40000, vip, 80, tcpSYN).bytes()
	frag[14+6] = 0x00
	frag[14+7] = 0x10 // fragment offset 16*8
	badIHL := append([]byte{}, good...)
	badIHL[14] = 0x44
	badVer := append([]byte{}, good...)
	badVer[14] = 0x65
	cases := []struct {
		name string
		data []byte
		want []uint32 // acceptable verdicts
	}{
		{"ethernet + 1 byte", good[:15], []uint32{actShot}},
		{"truncated ip", good[:14+10], []uint32{actShot}},
		{"truncated tcp", good[:14+20+10], []uint32{actShot}},
		{"ihl < 5", badIHL, []uint32{actShot}},
		{"ip version 6 in an ipv4 frame", badVer, []uint32{actShot}},
		{"arp", arp, []uint32{actOK}},
		{"icmp to a service address", icmp, []uint32{actOK}},
		{"sctp", sctp, []uint32{actOK}},
		{"non-first fragment", frag, []uint32{actOK}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, prog := range map[string]*ebpf.Program{
				"from_container": h.d.Programs.FromContainer, "to_container": h.d.Programs.ToContainer,
				"from_netdev": h.d.Programs.FromNetdev, "to_netdev": h.d.Programs.ToNetdev,
				"from_overlay": h.d.Programs.FromOverlay,
			} {
				ret, _, err := h.tryRun(prog, tc.data)
				if err != nil {
					// BPF_PROG_TEST_RUN refuses IPv4 frames shorter than an IP header.
					t.Logf("%s: kernel refused the input: %v", name, err)
					continue
				}
				ok := false
				for _, w := range tc.want {
					ok = ok || ret == w
				}
				// Egress programs never drop on parse errors: the stack built the packet.
				if !ok && !(name == "to_container" || name == "to_netdev") {
					t.Errorf("%s: verdict %d, want one of %v", name, ret, tc.want)
				}
			}
		})
	}
	if h.metric("malformed") == 0 {
		t.Fatalf("malformed packets not counted")
	}
}

// TestRootToOverlay: packets the stack routes into the vxlan device get the
// tunnel key of the destination's node; without one they are dropped.
func TestRootToOverlay(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel)
	h.drainEvents()
	got := h.runPkt(h.d.Programs.ToOverlay, tcp(nodeA, 40000, podB, 8080, tcpSYN), actOK)
	expect(t, got, nodeA, 40000, podB, 8080)
	if peers := h.encapPeers(); len(peers) != 1 || peers[0] != nodeB {
		t.Fatalf("tunnel peers %v, want [%s]", peers, nodeB)
	}
	h.runPkt(h.d.Programs.ToOverlay, tcp(nodeA, 40000, netip.MustParseAddr("10.250.0.1"), 8080, tcpSYN), actShot)
	if n := h.metric("no_tunnel"); n != 1 {
		t.Fatalf("no_tunnel = %d", n)
	}
}

// icmpErr builds an ICMP port unreachable from src to dst quoting orig.
func icmpErr(src, dst netip.Addr, orig packet) packet {
	b := orig.bytes()
	return packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: src, Dst: dst, Proto: 1, ICMPType: 3, ICMPCode: 3,
		Payload: append([]byte(nil), b[14:14+28]...)}
}

// expectQuoted checks the packet quoted in an ICMP error (and its IP checksum).
func expectQuoted(t *testing.T, got packet, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) {
	t.Helper()
	if got.Proto != 1 || len(got.Payload) < 28 {
		t.Fatalf("not an ICMP error: %+v", got)
	}
	in := got.Payload
	if c := fold(csum(0, in[:20])); c != 0 {
		t.Fatalf("bad quoted IP checksum")
	}
	qs, qd := netip.AddrFrom4([4]byte(in[12:16])), netip.AddrFrom4([4]byte(in[16:20]))
	qsp, qdp := uint16(in[20])<<8|uint16(in[21]), uint16(in[22])<<8|uint16(in[23])
	if qs != src || qsp != sport || qd != dst || qdp != dport {
		t.Fatalf("quoted %s:%d -> %s:%d, want %s:%d -> %s:%d", qs, qsp, qd, qdp, src, sport, dst, dport)
	}
}
