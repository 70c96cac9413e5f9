package bpf_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// XDP verdicts.
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// vxlanOuterLen is what encapsulation adds: outer Ethernet, IPv4, UDP, VXLAN.
const vxlanOuterLen = 14 + 20 + 8 + 8

// xdpCtx is struct xdp_md as BPF_PROG_TEST_RUN accepts it (data_end = frame length).
type xdpCtx struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// runXDP runs prog on data as a frame received on kdt0 and returns the verdict and output frame.
func (h *harness) runXDP(prog *ebpf.Program, data []byte) (uint32, []byte) {
	return h.runCtx(prog, data, xdpCtx{DataEnd: uint32(len(data)), IngressIfindex: h.ifindex})
}

// runTC runs a tc program on data and returns the verdict and output frame.
func (h *harness) runTC(prog *ebpf.Program, data []byte) (uint32, []byte) {
	return h.runCtx(prog, data, skbCtx{IngressIfindex: h.ifindex, Ifindex: h.ifindex})
}

// runCtx runs prog on data with context ctx and returns the verdict and the output, as long
// as the program left it (room for encapsulation).
func (h *harness) runCtx(prog *ebpf.Program, data []byte, ctx any) (uint32, []byte) {
	h.t.Helper()
	opts := &ebpf.RunOptions{Data: data, DataOut: make([]byte, len(data)+256), Context: ctx}
	var ret uint32
	var err error
	h.inNetns(func() { ret, err = prog.Run(opts) })
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	return ret, opts.DataOut
}

// ctState is a harness's conntrack (both tables) without lifetimes, sorted: what two
// programs that handled the same packets must agree on.
func (h *harness) ctState() []string {
	var out []string
	must(h.t, h.d.Maps.IterateConntrack(func(k maps.ConntrackKey, v maps.ConntrackValue) bool {
		v.Expires = 0
		out = append(out, fmt.Sprintf("%+v=%+v", k, v))
		return true
	}))
	sort.Strings(out)
	return out
}

// counters is a harness's metrics.
func (h *harness) counters() maps.Counters {
	c, err := h.d.Maps.ReadMetrics()
	must(h.t, err)
	return c
}

// xdpPair is two datapaths for node A programmed alike: tc runs from_netdev on one,
// XDP xdp_netdev on the other.
type xdpPair struct{ tc, xdp *harness }

func newXDPPair(t *testing.T, tunnelMTU uint16) xdpPair {
	p := xdpPair{tc: newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod2), xdp: newHarness(t, nodeA, cidrA, maps.ModeTunnel, pod2)}
	for _, h := range []*harness{p.tc, p.xdp} {
		cfg, err := h.d.Maps.GetConfig()
		must(t, err)
		cfg.TunnelMTU = tunnelMTU
		must(t, h.d.Maps.SetConfig(cfg))
		// remote only: tunnel and dsr services, TCP and UDP
		h.service(svcKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), 1, 0, backend{addr: podB, port: 8080, node: nodeB})
		h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 2, 0, backend{addr: podB, port: 5353, node: nodeB})
		h.service(svcKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal), 3, maps.SvcDSR, backend{addr: podB, port: 8080, node: nodeB})
		h.service(svcKey(extIP, 80, maps.ProtoTCP, maps.ScopeExternal), 4, 0, backend{addr: podB, port: 8080, node: nodeB})
		// local, local and remote, none
		h.service(svcKey(netip.Addr{}, 30090, maps.ProtoTCP, maps.ScopeExternal), 5, 0, backend{addr: pod2, port: 8080})
		h.service(svcKey(netip.Addr{}, 30091, maps.ProtoTCP, maps.ScopeExternal), 6, 0,
			backend{addr: pod2, port: 8080}, backend{addr: podB, port: 8080, node: nodeB})
		h.service(svcKey(netip.Addr{}, 30092, maps.ProtoTCP, maps.ScopeExternal), 7, maps.SvcReject)
		h.service(svcKey(netip.Addr{}, 30093, maps.ProtoUDP, maps.ScopeExternal), 8, maps.SvcReject)
		h.service(svcKey(netip.Addr{}, 30094, maps.ProtoTCP, maps.ScopeExternal), 9, maps.SvcExternalLocal,
			backend{addr: podB, port: 8080, node: nodeB})
	}
	return p
}

// TestRootXDPNodePortRemoteMatchesTC feeds the same frames to from_netdev (tc) and xdp_netdev
// (XDP) on two datapaths programmed alike: a flow to a remote backend leaves XDP as the frame
// tc sends into the vxlan device, inside the VXLAN headers that device adds (to the backend's
// node, VNI 1, port 8472), with the same conntrack entries and counters; everything else
// passes XDP untouched and unrecorded, for tc to handle.
func TestRootXDPNodePortRemoteMatchesTC(t *testing.T) {
	p := newXDPPair(t, 1450)
	prog := p.xdp.d.Programs.XdpNetdev
	if prog == nil {
		t.Fatal("xdp_netdev is not loaded")
	}
	mss := func(pk packet, v uint16) packet {
		pk.TCPOpts = []byte{2, 4, byte(v >> 8), byte(v)}
		return pk
	}
	frag := udp(client, 50100, nodeA, 30053)
	frag.FragOff = ipMF

	for _, tc := range []struct {
		name string
		in   packet
	}{
		{"tcp syn", tcp(client, 50000, nodeA, 30080, tcpSYN)},
		{"tcp syn with an mss that fits", mss(tcp(client, 50001, nodeA, 30080, tcpSYN), 1400)},
		{"tcp ack of an established flow", tcp(client, 50000, nodeA, 30080, tcpACK)},
		{"tcp fin", tcp(client, 50000, nodeA, 30080, tcpFIN|tcpACK)},
		{"udp", udp(client, 50000, nodeA, 30053)},
		{"udp again (confirms the flow)", udp(client, 50000, nodeA, 30053)},
		{"dsr service", tcp(client, 50002, nodeA, 30081, tcpSYN)},
		{"externalIP", tcp(client, 50003, extIP, 80, tcpSYN)},
	} {
		t.Run("encap "+tc.name, func(t *testing.T) {
			in := tc.in.bytes()
			tret, tout := p.tc.runTC(p.tc.d.Programs.FromNetdev, in)
			xret, xout := p.xdp.runXDP(prog, in)
			if tret != actRedirect || xret != xdpTX {
				t.Fatalf("verdicts tc %d xdp %d, want %d and %d (XDP_TX)", tret, xret, actRedirect, xdpTX)
			}
			if !bytes.Equal(xout[vxlanOuterLen:], tout) {
				t.Fatalf("inner frame differs from tc's:\nxdp %x\ntc  %x", xout[vxlanOuterLen:], tout)
			}
			checkVXLANOuter(t, xout, p.xdp.ifMAC, len(tout))
			if a, b := p.tc.ctState(), p.xdp.ctState(); !reflect.DeepEqual(a, b) {
				t.Fatalf("conntrack differs:\ntc  %v\nxdp %v", a, b)
			}
			if a, b := p.tc.counters(), p.xdp.counters(); !reflect.DeepEqual(a, b) {
				t.Fatalf("metrics differ:\ntc  %+v\nxdp %+v", a, b)
			}
		})
	}

	for _, tc := range []struct {
		name string
		in   packet
	}{
		{"local backend", tcp(client, 50010, nodeA, 30090, tcpSYN)},
		{"local and remote backends", tcp(client, 50011, nodeA, 30091, tcpSYN)},
		{"no backend, tcp reject", tcp(client, 50012, nodeA, 30092, tcpSYN)},
		{"no backend, udp reject", udp(client, 50012, nodeA, 30093)},
		{"eTP Local without a local backend", tcp(client, 50013, nodeA, 30094, tcpSYN)},
		{"syn whose mss tc clamps", mss(tcp(client, 50014, nodeA, 30080, tcpSYN), 1460)},
		{"too big for the tunnel", func() packet {
			pk := tcp(client, 50015, nodeA, 30080, tcpACK)
			pk.Payload = make([]byte, 1450)
			pk.FragOff = ipDF
			return pk
		}()},
		{"first fragment", frag},
		{"not a service", tcp(client, 50016, nodeA, 22, tcpSYN)},
		{"foreign address", tcp(client, 50017, netip.MustParseAddr("192.168.50.77"), 30080, tcpSYN)},
		{"vxlan", udp(nodeB, 40000, nodeA, 8472)},
		{"icmp", packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: client, Dst: nodeA, Proto: 1, ICMPType: 8}},
	} {
		t.Run("pass "+tc.name, func(t *testing.T) {
			before, ctBefore := p.xdp.counters(), p.xdp.ctState()
			in := tc.in.bytes()
			ret, out := p.xdp.runXDP(prog, in)
			if ret != xdpPass {
				t.Fatalf("verdict %d, want XDP_PASS", ret)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("frame changed:\nout %x\nin  %x", out, in)
			}
			if after := p.xdp.counters(); !reflect.DeepEqual(before, after) {
				t.Fatalf("metrics changed: %+v -> %+v", before, after)
			}
			if after := p.xdp.ctState(); !reflect.DeepEqual(ctBefore, after) {
				t.Fatalf("conntrack changed: %v -> %v", ctBefore, after)
			}
		})
	}
}

// TestRootXDPPassesOffloadedChecksum: a segment whose checksum field holds only the pseudo-header
// sum (a sender on this machine left the rest to offload, CHECKSUM_PARTIAL, which an XDP frame
// does not carry) passes XDP untouched and unrecorded, TCP and UDP, for tc, whose skb keeps the
// offload state: sent on with XDP_TX, it would reach the backend with a bad checksum.
func TestRootXDPPassesOffloadedChecksum(t *testing.T) {
	p := newXDPPair(t, 1450)
	for _, tc := range []struct {
		name  string
		in    packet
		check int // offset of the L4 checksum in the frame
	}{
		{"tcp syn", tcp(client, 50020, nodeA, 30080, tcpSYN), 14 + 20 + 16},
		{"udp", udp(client, 50021, nodeA, 30053), 14 + 20 + 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in.bytes()
			l4len := len(in) - 14 - 20
			binary.BigEndian.PutUint16(in[tc.check:], ^fold(pseudo(tc.in.Src, tc.in.Dst, tc.in.Proto, l4len)))
			before, ctBefore := p.xdp.counters(), p.xdp.ctState()
			ret, out := p.xdp.runXDP(p.xdp.d.Programs.XdpNetdev, in)
			if ret != xdpPass || !bytes.Equal(out, in) {
				t.Fatalf("verdict %d (want XDP_PASS), frame %x (want %x)", ret, out, in)
			}
			if after := p.xdp.counters(); !reflect.DeepEqual(before, after) {
				t.Fatalf("metrics changed: %+v -> %+v", before, after)
			}
			if after := p.xdp.ctState(); !reflect.DeepEqual(ctBefore, after) {
				t.Fatalf("conntrack changed: %v -> %v", ctBefore, after)
			}
		})
	}
}

// checkVXLANOuter checks the headers in front of an inner frame of n bytes: to node B's MAC
// from ours, IPv4 node A -> node B (valid checksum, TTL 64), UDP to 8472 with no checksum,
// VXLAN with the I flag and VNI 1.
func checkVXLANOuter(t *testing.T, b []byte, ourMAC [6]byte, n int) {
	t.Helper()
	if len(b) != vxlanOuterLen+n {
		t.Fatalf("frame %d bytes, want %d", len(b), vxlanOuterLen+n)
	}
	if !bytes.Equal(b[0:6], nodeBMAC[:]) || !bytes.Equal(b[6:12], ourMAC[:]) || b[12] != 8 || b[13] != 0 {
		t.Fatalf("outer ethernet %x", b[:14])
	}
	ip := b[14:34]
	a, bb := nodeA.As4(), nodeB.As4()
	if ip[0] != 0x45 || ip[8] != 64 || ip[9] != 17 || !bytes.Equal(ip[12:16], a[:]) || !bytes.Equal(ip[16:20], bb[:]) ||
		int(binary.BigEndian.Uint16(ip[2:])) != 20+8+8+n || fold(csum(0, ip)) != 0 {
		t.Fatalf("outer ip %x", ip)
	}
	udp := b[34:42]
	if binary.BigEndian.Uint16(udp[2:]) != 8472 || int(binary.BigEndian.Uint16(udp[4:])) != 8+8+n ||
		binary.BigEndian.Uint16(udp[6:]) != 0 || binary.BigEndian.Uint16(udp[0:]) < 32768 {
		t.Fatalf("outer udp %x", udp)
	}
	if vx := b[42:50]; !bytes.Equal(vx, []byte{8, 0, 0, 0, 0, 0, 1, 0}) {
		t.Fatalf("vxlan header %x", vx)
	}
}

// xdpLiveFrames is how many frames one live measurement sends.
const xdpLiveFrames = 1_000_000

// BenchmarkRootNodePortRemoteXDPvsTC measures packets per second through a NodePort to a
// backend on another node, the whole way out of the NIC, with the XDP fast path and with tc:
// BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, the kernel's XDP packet
// generator) sends one UDP frame of an established flow xdpLiveFrames times into kdt0 (a veth
// whose peer drops what reaches it at XDP).
//
//   - xdp: xdp_netdev runs on the frames; each leaves encapsulated with XDP_TX.
//   - tc: an XDP program passes the frames, so each becomes an skb that from_netdev (tcx
//     ingress of kdt0) redirects into a real vxlan device, which encapsulates and sends it
//     out of kdt0: what a node does without XDP.
//
// Reported: frames per second (best of b.N) of each and their ratio.
func BenchmarkRootNodePortRemoteXDPvsTC(b *testing.B) {
	h := newHarness(b, nodeA, cidrA, maps.ModeTunnel)
	h.ns.IP("link", "add", "vxlan0", "type", "vxlan", "dstport", "8472", "external")
	h.ns.IP("link", "set", "vxlan0", "up")
	var vx int
	h.inNetns(func() {
		ifc, err := net.InterfaceByName("vxlan0")
		must(b, err)
		vx = ifc.Index
	})
	c, err := h.d.Maps.GetConfig()
	must(b, err)
	c.Debug, c.EventSample, c.VXLANIfindex = 0, 0, uint32(vx)
	must(b, h.d.Maps.SetConfig(c))
	h.service(svcKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal), 1, 0, backend{addr: podB, port: 5353, node: nodeB})
	data := udp(client, 50000, nodeA, 30053).bytes()

	ret := func(v uint32) *ebpf.Program {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, int32(v)), asm.Return()}})
		must(b, err)
		b.Cleanup(func() { p.Close() })
		return p
	}
	var peer int
	h.inNetns(func() {
		ifc, err := net.InterfaceByName("kdt1")
		must(b, err)
		peer = ifc.Index
		l, err := link.AttachXDP(link.XDPOptions{Program: ret(xdpDrop), Interface: peer})
		must(b, err)
		b.Cleanup(func() { l.Close() })
		l, err = link.AttachTCX(link.TCXOptions{Program: h.d.Programs.FromNetdev, Attach: ebpf.AttachTCXIngress,
			Interface: int(h.ifindex)})
		must(b, err)
		b.Cleanup(func() { l.Close() })
	})
	pass := ret(xdpPass)
	live := func(prog *ebpf.Program) float64 {
		var err error
		var d time.Duration
		h.inNetns(func() {
			start := time.Now()
			_, err = prog.Run(&ebpf.RunOptions{Data: data, Repeat: xdpLiveFrames, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
				Context: xdpCtx{DataEnd: uint32(len(data)), IngressIfindex: h.ifindex}})
			d = time.Since(start)
		})
		must(b, err)
		return xdpLiveFrames / d.Seconds()
	}
	encaps := func() uint64 { return h.metric("encap") }
	var best [2]float64
	for i, prog := range []*ebpf.Program{h.d.Programs.XdpNetdev, pass} {
		before := encaps()
		live(prog) // warm up (the first frame creates the flow)
		if n := encaps() - before; n < xdpLiveFrames*9/10 {
			b.Fatalf("path %d: %d of %d frames encapsulated", i, n, xdpLiveFrames)
		}
	}
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		for j := range best {
			i := (j + iter) % 2 // alternate which goes first
			prog := h.d.Programs.XdpNetdev
			if i == 1 {
				prog = pass
			}
			if pps := live(prog); pps > best[i] {
				best[i] = pps
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(best[0], "xdp-pkt/s")
	b.ReportMetric(best[1], "tc-pkt/s")
	b.ReportMetric(best[0]/best[1], "xdp/tc")
	b.Logf("NodePort to a remote backend: xdp %.0f pkt/s, tc %.0f pkt/s, ratio %.2f", best[0], best[1], best[0]/best[1])
}
