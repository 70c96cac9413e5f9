package bpf_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// fixChecksums rewrites the IPv4 and TCP/UDP/ICMP checksums of an Ethernet frame whose lengths are
// consistent, so that mutated headers reach the programs' translation paths instead of stopping at a
// checksum nobody verifies. Frames it cannot parse are left as they are.
func fixChecksums(b []byte) {
	if len(b) < 34 || b[12] != 0x08 || b[13] != 0 {
		return
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || ihl < 20 || tot < ihl || tot > len(ip) {
		return
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], fold(csum(0, ip[:ihl])))
	if binary.BigEndian.Uint16(ip[6:])&(ipMF|0x1fff) != 0 {
		return // a fragment's L4 checksum covers the whole datagram
	}
	src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	l4 := ip[ihl:tot]
	switch ip[9] {
	case 6:
		if len(l4) >= 20 {
			l4[16], l4[17] = 0, 0
			binary.BigEndian.PutUint16(l4[16:], fold(csum(pseudo(src, dst, 6, len(l4)), l4)))
		}
	case 17:
		if len(l4) >= 8 {
			binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
			l4[6], l4[7] = 0, 0
			c := fold(csum(pseudo(src, dst, 17, len(l4)), l4))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], c)
		}
	case 1:
		if len(l4) >= 8 {
			l4[2], l4[3] = 0, 0
			binary.BigEndian.PutUint16(l4[2:], fold(csum(0, l4)))
		}
	}
}

// FuzzRootDatapath feeds random and truncated frames, mutated from real ones (checksums made valid
// again so mutations reach the NAT code), to every tc program of a node that holds a ClusterIP, an
// external IP and a NodePort with local and remote backends. Whatever a frame holds:
//   - the kernel runs the program, and the verdict is pass, drop or redirect;
//   - a dropped frame is counted under a drop reason;
//   - a frame the program passes or redirects with valid checksums leaves with valid checksums;
//   - addresses are only ever rewritten between a frontend and one of its backends (or this node's
//     own and hairpin addresses): nothing is translated to an address nobody programmed.
//
// The first byte of an input picks the program; the rest is the frame. Each frame is judged on its
// own: the flows earlier inputs left behind are forgotten first (a flow to another node's address
// arriving through the tunnel legitimately teaches the node a frontend nobody programmed here).
func FuzzRootDatapath(f *testing.F) {
	h := newHarness(f, nodeA, cidrA, maps.ModeTunnel, pod1, pod2)
	backends := []backend{{addr: pod1, port: 8080}, {addr: pod2, port: 8080}, {addr: podB, port: 8080, node: nodeB}}
	fronts := []netip.AddrPort{netip.AddrPortFrom(vip, 80), netip.AddrPortFrom(extIP, 80), netip.AddrPortFrom(nodeA, 30080)}
	for _, proto := range []uint8{maps.ProtoTCP, maps.ProtoUDP} {
		id := uint32(proto) // one backend table per protocol
		h.service(svcKey(vip, 80, proto, maps.ScopeCluster), id, 0, backends...)
		h.service(svcKey(extIP, 80, proto, maps.ScopeExternal), id, 0, backends...)
		h.service(svcKey(netip.Addr{}, 30080, proto, maps.ScopeExternal), id, 0, backends...)
	}
	progs := []*ebpf.Program{h.d.Programs.FromContainer, h.d.Programs.ToContainer, h.d.Programs.FromNetdev, h.d.Programs.ToNetdev, h.d.Programs.FromOverlay}
	known := []netip.Addr{nodeA, nodeB, client, maps.DefaultHairpinAddr}
	for _, b := range backends {
		known = append(known, b.addr)
	}
	for _, fe := range fronts {
		known = append(known, fe.Addr())
	}

	frag := tcp(client, 50000, nodeA, 30080, tcpSYN)
	frag.ID, frag.FragOff = 7, ipMF
	seeds := []packet{
		tcp(pod1, 40000, vip, 80, tcpSYN),
		tcp(client, 50000, nodeA, 30080, tcpSYN),
		tcp(client, 50000, extIP, 80, tcpSYN|tcpACK),
		udp(pod2, 40001, vip, 80),
		udp(client, 50001, nodeA, 30080),
		tcp(pod1, 8080, client, 50000, tcpSYN|tcpACK),
		tcp(podB, 8080, client, 50000, tcpACK|tcpFIN),
		icmpErr(pod1, client, udp(client, 50001, pod1, 8080)),
		frag,
	}
	for i, p := range seeds {
		f.Add(append([]byte{byte(i % len(progs))}, p.bytes()...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		prog, frame := progs[int(data[0])%len(progs)], slices.Clone(data[1:])
		forgetFlows(t, h)
		fixChecksums(frame)
		in, inErr := decode(frame)
		before := drops(t, h)
		ret, out, err := h.tryRun(prog, frame)
		if err != nil {
			return // BPF_PROG_TEST_RUN refuses frames shorter than their headers: no program ran
		}
		switch ret {
		case actShot:
			if drops(t, h) == before {
				t.Fatalf("%s dropped a frame without counting a reason:\n% x", prog, frame)
			}
			return
		case actOK, actRedirect:
		default:
			t.Fatalf("%s: verdict %d", prog, ret)
		}
		if inErr != nil {
			return // malformed frames pass untouched or are dropped; nothing more to judge
		}
		got, err := decode(out)
		if err != nil {
			t.Fatalf("%s turned a valid frame into an invalid one: %v\nin:  %+v", prog, err, in)
		}
		for _, a := range []netip.Addr{got.Src, got.Dst} {
			if !slices.Contains(known, a) && a != in.Src && a != in.Dst {
				t.Fatalf("%s translated to %s, which nobody programmed:\nin:  %+v\nout: %+v", prog, a, in, got)
			}
		}
		if got.Dst != in.Dst && got.Proto == in.Proto && (in.Proto == 6 || in.Proto == 17) && in.FragOff&0x1fff == 0 {
			if !slices.Contains(fronts, netip.AddrPortFrom(in.Dst, in.DstPort)) && !isBackend(backends, netip.AddrPortFrom(got.Dst, got.DstPort)) && got.Dst != nodeA {
				t.Fatalf("%s rewrote the destination of a flow to no frontend:\nin:  %+v\nout: %+v", prog, in, got)
			}
		}
	})
}

func isBackend(bes []backend, ap netip.AddrPort) bool {
	for _, b := range bes {
		if b.addr == ap.Addr() && b.port == ap.Port() {
			return true
		}
	}
	return false
}

// drops sums the datapath's drop counters over every reason.
func drops(t *testing.T, h *harness) uint64 {
	c, err := h.d.Maps.ReadMetrics()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, m := range c.Drops {
		n += m.Packets
	}
	return n
}

// forgetFlows empties the maps that hold per-flow state (conntrack, affinity, fragments).
func forgetFlows(t *testing.T, h *harness) {
	for _, m := range []*ebpf.Map{h.d.Maps.Conntrack, h.d.Maps.ConntrackNew, h.d.Maps.Affinity, h.d.Maps.Frags} {
		var keys [][]byte
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, slices.Clone(k))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			_ = m.Delete(key)
		}
	}
}
