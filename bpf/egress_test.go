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
