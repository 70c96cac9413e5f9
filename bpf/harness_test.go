package bpf_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// tc verdicts.
const (
	actOK       = 0
	actShot     = 2
	actRedirect = 7
)

// The test topology. Node A is the node under test unless a harness is built
// for node B. The fake underlay lives in a network namespace the test creates
// (veth kdt0 with nodeA's address and permanent neighbours for the client and
// node B), so FIB lookups in the programs are deterministic.
var (
	nodeA     = netip.MustParseAddr("192.168.50.1")
	nodeB     = netip.MustParseAddr("192.168.50.2")
	client    = netip.MustParseAddr("192.168.50.99")
	clientMAC = [6]byte{2, 0, 0, 0, 0, 0x99}
	nodeBMAC  = [6]byte{2, 0, 0, 0, 0, 0x02}
	cidrA     = netip.MustParsePrefix("10.244.1.0/24")
	cidrB     = netip.MustParsePrefix("10.244.2.0/24")
	pod1      = netip.MustParseAddr("10.244.1.10")
	pod2      = netip.MustParseAddr("10.244.1.11")
	pod3      = netip.MustParseAddr("10.244.1.12")
	podB      = netip.MustParseAddr("10.244.2.20")
	podB2     = netip.MustParseAddr("10.244.2.21")
	vip       = netip.MustParseAddr("10.96.0.10")
	extIP     = netip.MustParseAddr("203.0.113.10")
	hostMAC   = [6]byte{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	anyMAC    = [6]byte{0x02, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}
	vxlanIdx  = uint32(4242)
)

// podMAC and podIfindex derive a local pod's MAC and host veth index from its address.
func podMAC(a netip.Addr) [6]byte    { b := a.As4(); return [6]byte{2, 0x11, b[0], b[1], b[2], b[3]} }
func podIfindex(a netip.Addr) uint32 { return 1000 + uint32(a.As4()[3]) }

type harness struct {
	t       testing.TB
	d       *loader.Datapath
	self    netip.Addr
	ns      *testutil.Netns
	ifindex uint32 // kdt0 in the namespace
	ifMAC   [6]byte
	events  *ringbuf.Reader
}

// newHarness loads a datapath into a fresh pin dir configured as node self
// with pod CIDR cidr and the given local pods, and a namespace for FIB lookups.
func newHarness(t testing.TB, self netip.Addr, cidr netip.Prefix, mode uint8, pods ...netip.Addr) *harness {
	t.Helper()
	return newHarnessSized(t, config.MapSizes{Conntrack: 65536}, self, cidr, mode, pods...)
}

// newHarnessSized is newHarness with explicit map sizes.
func newHarnessSized(t testing.TB, sizes config.MapSizes, self netip.Addr, cidr netip.Prefix, mode uint8, pods ...netip.Addr) *harness {
	t.Helper()
	testutil.RequireRoot(t)
	h := &harness{t: t, self: self}
	h.setupNetns()
	h.d = loadertest.Load(t, loader.Options{MapSizes: sizes})
	m := h.d.Maps
	mask := net.CIDRMask(cidr.Bits(), 32)
	must(t, m.SetConfig(maps.Config{
		NodeIP: maps.Addr4(self), PodCIDR: maps.Addr4(cidr.Addr()), PodMask: [4]byte(mask),
		HairpinAddr: maps.Addr4(maps.DefaultHairpinAddr), VXLANIfindex: vxlanIdx,
		NetdevIfindex: h.ifindex, EventSample: 1, VXLANPort: 8472, Mode: mode, Debug: maps.DebugTrace,
	}))
	must(t, m.AddNodeAddr(self))
	must(t, m.SetTunnel(cidrA, nodeA))
	must(t, m.SetTunnel(cidrB, nodeB))
	for _, p := range pods {
		must(t, m.SetEndpoint(p, maps.EndpointValue{Ifindex: podIfindex(p), MAC: podMAC(p), HostMAC: hostMAC}))
	}
	var err error
	if h.events, err = ringbuf.NewReader(m.Events); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.events.Close() })
	return h
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) setupNetns() {
	t := h.t
	ns := testutil.NewNetns(t, "kdt")
	h.ns = ns
	ns.IP("link", "add", "kdt0", "type", "veth", "peer", "name", "kdt1")
	ns.IP("addr", "add", "192.168.50.1/24", "dev", "kdt0")
	ns.IP("link", "set", "kdt0", "up")
	ns.IP("link", "set", "kdt1", "up")
	ns.IP("neigh", "replace", client.String(), "lladdr", net.HardwareAddr(clientMAC[:]).String(), "dev", "kdt0", "nud", "permanent")
	ns.IP("neigh", "replace", nodeB.String(), "lladdr", net.HardwareAddr(nodeBMAC[:]).String(), "dev", "kdt0", "nud", "permanent")
	h.inNetns(func() {
		ifc, err := net.InterfaceByName("kdt0")
		if err != nil {
			t.Errorf("kdt0: %v", err)
			return
		}
		h.ifindex = uint32(ifc.Index)
		copy(h.ifMAC[:], ifc.HardwareAddr)
	})
}

// inNetns runs fn on a thread switched into the test namespace.
func (h *harness) inNetns(fn func()) { h.ns.Do(fn) }

// skbCtx is the leading part of struct __sk_buff that BPF_PROG_TEST_RUN accepts.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority uint32
	IngressIfindex, Ifindex                                                               uint32
}

// run executes prog on data in the test namespace and returns the verdict and
// the output bytes.
func (h *harness) run(prog *ebpf.Program, data []byte) (uint32, []byte) {
	h.t.Helper()
	ret, out, err := h.tryRun(prog, data)
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	return ret, out
}

// tryRun is run returning the error (the kernel refuses some inputs).
func (h *harness) tryRun(prog *ebpf.Program, data []byte) (uint32, []byte, error) {
	out := make([]byte, 4096)
	var ret uint32
	var err error
	h.inNetns(func() {
		ret, err = prog.Run(&ebpf.RunOptions{
			Data:    data,
			DataOut: out,
			Context: skbCtx{IngressIfindex: h.ifindex, Ifindex: h.ifindex},
		})
	})
	return ret, out, err
}

// runPkt runs prog on p; when want is a redirect or pass it decodes and
// returns the output packet (checksums verified).
func (h *harness) runPkt(prog *ebpf.Program, p packet, want uint32) packet {
	h.t.Helper()
	ret, out := h.run(prog, p.bytes())
	if ret != want {
		h.t.Fatalf("verdict %d, want %d", ret, want)
	}
	if want == actShot {
		return packet{}
	}
	got, err := decode(out)
	if err != nil {
		h.t.Fatalf("output: %v", err)
	}
	return got
}

// drainEvents returns the events produced so far.
func (h *harness) drainEvents() []maps.Event {
	var evs []maps.Event
	h.events.SetDeadline(time.Now().Add(10 * time.Millisecond))
	for {
		rec, err := h.events.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				h.t.Fatalf("read events: %v", err)
			}
			return evs
		}
		e, err := maps.DecodeEvent(rec.RawSample)
		if err != nil {
			h.t.Fatal(err)
		}
		evs = append(evs, e)
	}
}

// encapPeers returns the tunnel peers of the encapsulation trace events since the last drain.
func (h *harness) encapPeers() []netip.Addr {
	var out []netip.Addr
	for _, e := range h.drainEvents() {
		if e.Verdict == maps.MetricEncap && e.Prog == 0 {
			out = append(out, netip.AddrFrom4(e.TunnelPeer))
		}
	}
	return out
}

// metric returns the summed packet counter of a verdict or drop reason name.
func (h *harness) metric(name string) uint64 {
	c, err := h.d.Maps.ReadMetrics()
	must(h.t, err)
	if m, ok := c.Verdicts[name]; ok {
		return m.Packets
	}
	return c.Drops[name].Packets
}

// backend describes a backend to program.
type backend struct {
	addr    netip.Addr
	port    uint16
	node    netip.Addr // invalid: local
	hostnet bool
}

// service programs a frontend and its backend tables.
func (h *harness) service(key maps.ServiceKey, id uint32, flags uint32, bes ...backend) {
	h.t.Helper()
	m := h.d.Maps
	var n, local uint16
	for _, b := range bes {
		v := maps.BackendValue{Addr: maps.Addr4(b.addr), Port: b.port}
		if b.node.IsValid() && b.node != h.self {
			v.Flags = maps.BackendRemote
			v.NodeIP = maps.Addr4(b.node)
		} else {
			v.Flags = maps.BackendLocal
		}
		if b.hostnet {
			v.Flags |= maps.BackendHostNet
		}
		must(h.t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Slot: n, Table: maps.TableAll}, v))
		n++
		if v.Flags&maps.BackendLocal != 0 {
			must(h.t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Slot: local, Table: maps.TableLocal}, v))
			local++
		}
	}
	must(h.t, m.UpdateService(key, maps.ServiceValue{ID: id, Count: n, LocalCount: local, Flags: flags, AffinityTimeout: 10800}))
}

func tcp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) packet {
	return packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: src, Dst: dst, Proto: 6, SrcPort: sport, DstPort: dport,
		TCPFlags: flags, Seq: 1000, Ack: 0, Payload: []byte("hello")}
}

func udp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) packet {
	return packet{DstMAC: hostMAC, SrcMAC: anyMAC, Src: src, Dst: dst, Proto: 17, SrcPort: sport, DstPort: dport,
		Payload: []byte("ping")}
}

// expect compares the rewritten header fields.
func expect(t *testing.T, got packet, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) {
	t.Helper()
	if got.Src != src || got.SrcPort != sport || got.Dst != dst || got.DstPort != dport {
		t.Fatalf("got %s:%d -> %s:%d, want %s:%d -> %s:%d", got.Src, got.SrcPort, got.Dst, got.DstPort,
			src, sport, dst, dport)
	}
}

func expectMACs(t *testing.T, got packet, dst, src [6]byte) {
	t.Helper()
	if got.DstMAC != dst || got.SrcMAC != src {
		t.Fatalf("MACs %x <- %x, want %x <- %x", got.DstMAC, got.SrcMAC, dst, src)
	}
}

func svcKey(a netip.Addr, port uint16, proto, scope uint8) maps.ServiceKey {
	return maps.NewServiceKey(a, port, proto, scope)
}
