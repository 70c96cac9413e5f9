package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// TestRootDSRReplyToOwnNodeClient: in dsr mode a host-network client on A
// sends to B's NodePort, B forwards to a backend pod on A; the reverse-NATed
// reply's destination is A's own address, so no FIB route leads out of a NIC
// and the local stack must take it (it was dropped as `fib`).
func TestRootDSRReplyToOwnNodeClient(t *testing.T) {
	for _, proto := range []uint8{maps.ProtoUDP, maps.ProtoTCP} {
		t.Run(map[uint8]string{maps.ProtoUDP: "udp", maps.ProtoTCP: "tcp"}[proto], func(t *testing.T) {
			h := newHarness(t, nodeA, cidrA, maps.ModeDSR, pod1)
			p := h.d.Programs
			h.service(svcKey(netip.Addr{}, 30053, proto, maps.ScopeExternal), 1, 0, backend{addr: pod1, port: 5353})
			mk := func(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, fl uint8) packet {
				if proto == maps.ProtoUDP {
					return udp(src, sport, dst, dport)
				}
				return tcp(src, sport, dst, dport, fl)
			}
			got := h.runPkt(p.FromOverlay, mk(nodeA, 40000, nodeB, 30053, tcpSYN), actRedirect)
			expect(t, got, nodeA, 40000, pod1, 5353)
			rep := h.runPkt(p.FromContainer, mk(pod1, 5353, nodeA, 40000, tcpSYN|tcpACK), actOK)
			expect(t, rep, nodeB, 30053, nodeA, 40000)
			if n := h.metric("fib"); n != 0 {
				t.Fatalf("fib drops %d", n)
			}
		})
	}
}

// TestRootHostNetReplyToRemotePodThroughOverlay: a pod on A (not
// masqueraded) calls B's NodePort whose backend is host-network on B; the
// reply leaves B's stack through the vxlan device and must carry the NodePort
// as source (it carried the backend's port), encapsulated to A.
func TestRootHostNetReplyToRemotePodThroughOverlay(t *testing.T) {
	h := newHarness(t, nodeB, cidrB, maps.ModeTunnel)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30443, maps.ProtoTCP, maps.ScopeExternal), 1, 0,
		backend{addr: nodeB, port: 6443, hostnet: true})
	got := h.runPkt(p.FromNetdev, tcp(pod1, 40000, nodeB, 30443, tcpSYN), actOK)
	expect(t, got, pod1, 40000, nodeB, 6443)
	h.drainEvents()
	rep := h.runPkt(p.ToOverlay, tcp(nodeB, 6443, pod1, 40000, tcpSYN|tcpACK), actOK)
	expect(t, rep, nodeB, 30443, pod1, 40000)
	if peers := h.encapPeers(); len(peers) != 1 || peers[0] != nodeA {
		t.Fatalf("tunnel peers %v, want [%s]", peers, nodeA)
	}

	// Forwarded from ingress node A in tunnel mode (client in a pod CIDR of
	// a third node): the reply goes back to A, not to the client's node.
	podC := netip.MustParseAddr("10.244.3.30")
	must(t, h.d.Maps.SetTunnel(netip.MustParsePrefix("10.244.3.0/24"), netip.MustParseAddr("192.168.50.3")))
	got = h.runPkt(p.FromOverlay, tcp(podC, 40001, nodeA, 30443, tcpSYN), actOK)
	expect(t, got, podC, 40001, nodeB, 6443)
	h.drainEvents()
	rep = h.runPkt(p.ToOverlay, tcp(nodeB, 6443, podC, 40001, tcpSYN|tcpACK), actOK)
	expect(t, rep, nodeA, 30443, podC, 40001)
	if peers := h.encapPeers(); len(peers) != 1 || peers[0] != nodeA {
		t.Fatalf("forwarded reply tunnel peers %v, want [%s]", peers, nodeA)
	}
}

// setTunnelMTU sets the tunnel MTU in h's config.
func (h *harness) setTunnelMTU(mtu uint16) {
	h.t.Helper()
	c, err := h.d.Maps.GetConfig()
	must(h.t, err)
	c.TunnelMTU = mtu
	must(h.t, h.d.Maps.SetConfig(c))
}

// TestRootTunnelTooBigGetsFragNeeded: a client sends a DF datagram larger than the tunnel carries
// (underlay 1500 - 50) to a NodePort whose backend is on another node. It gets ICMP fragmentation
// needed with MTU 1450 from the node, quoting its packet, back out of the NIC (it was encapsulated and
// fragmented on the underlay, and the client never learned). Without DF, or small enough, it is
// encapsulated; a SYN's MSS entering the tunnel is clamped to 1450 - 40.
func TestRootTunnelTooBigGetsFragNeeded(t *testing.T) {
	h := newHarness(t, nodeA, cidrA, maps.ModeTunnel)
	h.setTunnelMTU(1450)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 1, 0, backend{addr: podB, port: 5353, node: nodeB})
	h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 2, 0, backend{addr: podB, port: 8080, node: nodeB})

	big := udp(client, 50000, nodeA, 30053)
	big.Payload = make([]byte, 1500-20-8)
	big.FragOff = ipDF
	big.SrcMAC = clientMAC
	ret, raw := h.run(p.FromNetdev, big.bytes())
	if ret != actRedirect {
		t.Fatalf("verdict %d, want redirect", ret)
	}
	got, err := decode(raw)
	must(t, err)
	if got.Proto != 1 || got.ICMPType != 3 || got.ICMPCode != 4 {
		t.Fatalf("got proto %d type %d code %d, want ICMP fragmentation needed", got.Proto, got.ICMPType, got.ICMPCode)
	}
	if got.Src != nodeA || got.Dst != client {
		t.Fatalf("icmp %s -> %s, want %s -> %s", got.Src, got.Dst, nodeA, client)
	}
	expectMACs(t, got, clientMAC, hostMAC)
	b := big.bytes()
	if mtu := uint16(raw[14+20+6])<<8 | uint16(raw[14+20+7]); mtu != 1450 {
		t.Fatalf("next-hop MTU %d, want 1450", mtu)
	}
	expectQuoted(t, got, client, 50000, nodeA, 30053)
	if string(got.Payload[:28]) != string(b[14:14+28]) {
		t.Fatalf("quoted packet differs from the original")
	}
	if n := h.metric("too_big"); n != 1 {
		t.Fatalf("too_big = %d", n)
	}
	if peers := h.encapPeers(); len(peers) != 0 {
		t.Fatalf("too big packet encapsulated to %v", peers)
	}

	// Without DF the kernel may fragment the outer packet; it fits: encapsulated as is.
	big.FragOff = 0
	h.runPkt(p.FromNetdev, big, actRedirect)
	fits := udp(client, 50001, nodeA, 30053)
	fits.Payload = make([]byte, 1450-20-8)
	fits.FragOff = ipDF
	h.runPkt(p.FromNetdev, fits, actRedirect)
	if peers := h.encapPeers(); len(peers) != 2 {
		t.Fatalf("encapsulated %d packets, want 2", len(peers))
	}

	syn := tcp(client, 50002, nodeA, 30080, tcpSYN)
	syn.TCPOpts = []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2} // MSS 1460, NOP, NOP, SACK permitted
	syn.Payload = nil
	got = h.runPkt(p.FromNetdev, syn, actRedirect)
	if mss := uint16(got.TCPOpts[2])<<8 | uint16(got.TCPOpts[3]); mss != 1410 {
		t.Fatalf("MSS %d, want 1410", mss)
	}
}

// TestRootFragmentedReplyTranslatedWhole: a backend's UDP reply too large for one packet leaves the pod
// as IP fragments; only the first carries the ports. Every fragment must leave with the frontend as
// source and take the first one's way (the tunnel back to the ingress node): the later ones kept the
// backend's address and the client could not reassemble the datagram.
func TestRootFragmentedReplyTranslatedWhole(t *testing.T) {
	h := newHarness(t, nodeB, cidrB, maps.ModeTunnel, podB)
	p := h.d.Programs
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 1, 0, backend{addr: podB, port: 5353})
	h.runPkt(p.FromOverlay, udp(client, 50000, nodeA, 30053), actRedirect)

	first := udp(podB, 5353, client, 50000)
	first.Payload = make([]byte, 1000-8)
	first.ID, first.FragOff = 0x1234, ipMF
	later := packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: podB, Dst: client, Proto: 17, ID: 0x1234,
		FragOff: 1000 / 8, L4: make([]byte, 700)}
	h.drainEvents()
	got := h.runPkt(p.FromContainer, first, actRedirect)
	expect(t, got, nodeA, 30053, client, 50000)
	got = h.runPkt(p.FromContainer, later, actRedirect)
	if got.Src != nodeA || got.Dst != client || got.ID != 0x1234 || got.FragOff != 1000/8 || len(got.L4) != 700 {
		t.Fatalf("later fragment %s -> %s id %#x off %d len %d, want %s -> %s", got.Src, got.Dst, got.ID,
			got.FragOff, len(got.L4), nodeA, client)
	}
	if peers := h.encapPeers(); len(peers) != 2 || peers[0] != nodeA || peers[1] != nodeA {
		t.Fatalf("tunnel peers %v, want both fragments to %s", peers, nodeA)
	}
	// A fragment of another datagram (other id) is not touched.
	later.ID = 0x4321
	got = h.runPkt(p.FromContainer, later, actOK)
	if got.Src != podB {
		t.Fatalf("unrelated fragment rewritten to %s", got.Src)
	}
}
