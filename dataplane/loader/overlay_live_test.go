package loader_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// kdNode is a node namespace on the test underlay with a vxlan device and a
// loaded, attached datapath.
type kdNode struct {
	ns   *netns
	ip   netip.Addr
	cidr netip.Prefix
	d    *loader.Datapath
	pods []*pod
	pin  string
	// xdp attaches xdp_netdev to eth0 too; netdevMode is what AttachNetdevXDP chose.
	xdp        bool
	netdevMode string
}

// load loads (or, on restart, adopts) the datapath and attaches it.
func (n *kdNode) load(t *testing.T) {
	d, err := loader.Load(context.Background(), loader.Options{PinDir: n.pin})
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	if err := n.ns.do(func() error {
		if err := d.AttachNetdev("eth0"); err != nil {
			return err
		}
		if n.xdp {
			var err error
			if n.netdevMode, err = d.AttachNetdevXDP("eth0"); err != nil {
				return err
			}
		}
		if err := d.AttachOverlay("vxlan0"); err != nil {
			return err
		}
		for _, p := range n.pods {
			if err := d.AttachContainer(p.hostIdx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("attach: %v", err)
	}
}

// TestRootLiveOverlay builds two nodes and an outside client on a bridge
// (all namespaces created here), a collect-metadata vxlan device per node,
// and checks with real TCP: client -> A:nodePort -> backend on B (tunnel and
// dsr), pod on A -> ClusterIP -> pod on B, and pod to pod across nodes. The
// backend reports the source address it saw: always the real client.
func TestRootLiveOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range []uint8{maps.ModeTunnel, maps.ModeDSR} {
		name := map[uint8]string{maps.ModeTunnel: "tunnel", maps.ModeDSR: "dsr"}[mode]
		t.Run(name, func(t *testing.T) { liveOverlay(t, mode, false, false) })
	}
}

// TestRootLiveOverlayXDP is TestRootLiveOverlay with xdp_netdev on node A's NIC (a veth: native
// XDP): the NodePort flows to B's backend are encapsulated at XDP (A's vxlan device sends none of
// them) and everything else works as with tc alone; the vxlan device, which has no native XDP,
// falls back to tc.
func TestRootLiveOverlayXDP(t *testing.T) {
	testutil.RequireRoot(t)
	liveOverlay(t, maps.ModeTunnel, true, false)
}

// TestRootLiveOverlayXDPOffloadedClientConnects is TestRootLiveOverlayXDP with the client's checksum
// offload left on, as every host's stack sends into a veth (a kind node's client is the host, through
// the docker bridge): its TCP and UDP segments carry only the pseudo-header sum, which the veth hands
// on as skb metadata that an XDP_TX frame loses. NodePort connections to B's backend must work all the
// same: xdp_netdev leaves such frames to tc.
func TestRootLiveOverlayXDPOffloadedClientConnects(t *testing.T) {
	testutil.RequireRoot(t)
	liveOverlay(t, maps.ModeTunnel, true, true)
}

// liveOverlay runs the cases; xdp puts xdp_netdev on A's NIC, offload leaves the client's transmit
// checksum offload on (with xdp, the XDP path then serves none of its flows).
func liveOverlay(t *testing.T, mode uint8, xdp, offload bool) {
	under := newNetns(t, "kdu-")
	sh(t, "ip", "-n", under.name, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", under.name, "link", "set", "br0", "up")
	plug := func(ns *netns, port string, ip netip.Addr) {
		sh(t, "ip", "-n", under.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
		sh(t, "ip", "-n", under.name, "link", "set", port, "master", "br0", "up")
		sh(t, "ip", "-n", ns.name, "addr", "add", ip.String()+"/24", "dev", "eth0")
		sh(t, "ip", "-n", ns.name, "link", "set", "eth0", "up")
	}
	cli := newNetns(t, "kdc-")
	cliIP := netip.MustParseAddr("192.168.88.99")
	plug(cli, "pc", cliIP)
	if xdp && !offload {
		// A veth hands its peer partial checksums (offload), which xdp_netdev leaves to tc: the
		// client sends complete checksums, as on a wire, so that XDP serves its flows.
		must(t, cli.do(func() error { return txChecksumOff("eth0") }))
	}

	vip := netip.MustParseAddr("10.96.0.10")
	mk := func(name string, ip netip.Addr, cidr netip.Prefix, podIPs ...netip.Addr) *kdNode {
		n := &kdNode{ns: newNetns(t, "kdn-"), ip: ip, cidr: cidr, xdp: xdp && name == "A"}
		plug(n.ns, "p"+name, ip)
		if n.xdp {
			// XDP_TX on a veth needs an XDP program (or NAPI) on its peer.
			xdpPassOn(t, under, "p"+name)
		}
		sh(t, "ip", "-n", n.ns.name, "link", "add", "vxlan0", "type", "vxlan", "dstport", "8472", "external", "nolearning")
		sh(t, "ip", "-n", n.ns.name, "link", "set", "vxlan0", "up")
		for i, a := range podIPs {
			n.pods = append(n.pods, addPod(t, n.ns, name+string(rune('a'+i)), a))
		}
		n.pin = loadertest.PinDir(t)
		n.load(t)
		t.Cleanup(func() { _ = n.d.Remove() })
		d := n.d
		vx, _ := n.ns.ifindexMAC(t, "vxlan0")
		nic, _ := n.ns.ifindexMAC(t, "eth0")
		m := d.Maps
		mask := net.CIDRMask(cidr.Bits(), 32)
		must(t, m.SetConfig(maps.Config{NodeIP: maps.Addr4(ip), PodCIDR: maps.Addr4(cidr.Addr()), PodMask: [4]byte(mask),
			HairpinAddr: maps.Addr4(maps.DefaultHairpinAddr), VXLANIfindex: uint32(vx), NetdevIfindex: uint32(nic),
			VXLANPort: 8472, Mode: mode}))
		must(t, m.AddNodeAddr(ip))
		for _, p := range n.pods {
			must(t, m.SetEndpoint(p.ip, maps.EndpointValue{Ifindex: uint32(p.hostIdx), MAC: p.mac, HostMAC: p.hostMAC}))
		}
		return n
	}
	a := mk("A", netip.MustParseAddr("192.168.88.1"), netip.MustParsePrefix("10.244.1.0/24"), netip.MustParseAddr("10.244.1.10"))
	b := mk("B", netip.MustParseAddr("192.168.88.2"), netip.MustParsePrefix("10.244.2.0/24"), netip.MustParseAddr("10.244.2.20"))
	for _, n := range []*kdNode{a, b} {
		must(t, n.d.Maps.SetTunnel(a.cidr, a.ip))
		must(t, n.d.Maps.SetTunnel(b.cidr, b.ip))
	}
	pa, pb := a.pods[0], b.pods[0]
	echoServer(t, pb.ns, 8080)

	// Service: NodePort 30080 and ClusterIP vip:80, one backend pb on B.
	svc := func(n *kdNode, local bool) {
		v := maps.BackendValue{Addr: maps.Addr4(pb.ip), Port: 8080}
		sv := maps.ServiceValue{ID: 1, Count: 1}
		if local {
			v.Flags = maps.BackendLocal
			sv.LocalCount = 1
			must(t, n.d.Maps.UpdateBackend(maps.BackendKey{ServiceID: 1, Table: maps.TableLocal}, v))
		} else {
			v.Flags = maps.BackendRemote
			v.NodeIP = maps.Addr4(b.ip)
		}
		must(t, n.d.Maps.UpdateBackend(maps.BackendKey{ServiceID: 1, Table: maps.TableAll}, v))
		must(t, n.d.Maps.UpdateService(maps.NewServiceKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), sv))
		must(t, n.d.Maps.UpdateService(maps.NewServiceKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), sv))
	}
	svc(a, false)
	svc(b, true)

	// A host-network backend on B (an echo server in B's node namespace on
	// its own address), behind NodePort 30090 on both nodes.
	sh(t, "ip", "netns", "exec", b.ns.name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.vxlan0.rp_filter=0")
	echoServer(t, b.ns, 9090)
	hostBE := maps.BackendValue{Addr: maps.Addr4(b.ip), Port: 9090, Flags: maps.BackendLocal | maps.BackendHostNet}
	_, _, err := b.d.Maps.SetService(2, []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, 30090, maps.ProtoTCP, maps.ScopeExternal)},
		nil, maps.ServiceValue{}, []maps.BackendValue{hostBE}, 0, 0)
	must(t, err)
	hostBE.Flags, hostBE.NodeIP = maps.BackendRemote|maps.BackendHostNet, maps.Addr4(b.ip)
	_, _, err = a.d.Maps.SetService(2, []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, 30090, maps.ProtoTCP, maps.ScopeExternal)},
		nil, maps.ServiceValue{}, []maps.BackendValue{hostBE}, 0, 0)
	must(t, err)
	// UDP NodePort 30053 -> pb:5353 (UDP echo).
	udpEcho(t, pb.ns, 5353)
	udpBE := maps.BackendValue{Addr: maps.Addr4(pb.ip), Port: 5353, Flags: maps.BackendLocal}
	_, _, err = b.d.Maps.SetService(3, []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal)},
		nil, maps.ServiceValue{}, []maps.BackendValue{udpBE}, 0, 0)
	must(t, err)
	udpBE.Flags, udpBE.NodeIP = maps.BackendRemote, maps.Addr4(b.ip)
	_, _, err = a.d.Maps.SetService(3, []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, 30053, maps.ProtoUDP, maps.ScopeExternal)},
		nil, maps.ServiceValue{}, []maps.BackendValue{udpBE}, 0, 0)
	must(t, err)

	t.Run("client to nodePort on A, host-network backend on B", func(t *testing.T) {
		c := dial(t, cli, a.ip.String()+":30090")
		for i := 0; i < 3; i++ {
			if got := ask(t, c); !strings.HasPrefix(got, cliIP.String()+":") {
				t.Fatalf("backend saw %s, want the client %s", got, cliIP)
			}
		}
	})
	t.Run("udp client to nodePort on A, backend on B", func(t *testing.T) {
		got, from := udpAsk(t, cli, net.JoinHostPort(a.ip.String(), "30053"))
		if !strings.HasPrefix(got, cliIP.String()+":") || from != a.ip.String()+":30053" {
			t.Fatalf("udp reply %q from %s; want the client's address from %s:30053", got, from, a.ip)
		}
	})
	t.Run("client to nodePort on A, backend on B", func(t *testing.T) {
		vxBefore := txPackets(t, a.ns, "vxlan0")
		c := dial(t, cli, a.ip.String()+":30080")
		for i := 0; i < 3; i++ {
			if got := ask(t, c); !strings.HasPrefix(got, cliIP.String()+":") {
				t.Fatalf("backend saw %s, want the client %s", got, cliIP)
			}
		}
		if ra := c.RemoteAddr().String(); ra != a.ip.String()+":30080" {
			t.Fatalf("client's peer %s", ra)
		}
		if xdp {
			if a.netdevMode != loader.NetdevXDP {
				t.Fatalf("A's eth0 runs %q, want %q", a.netdevMode, loader.NetdevXDP)
			}
			if n := txPackets(t, a.ns, "vxlan0") - vxBefore; n != 0 && !offload {
				t.Fatalf("A's vxlan device sent %d packets of an XDP-encapsulated flow", n)
			}
			var mode string
			must(t, a.ns.do(func() (err error) { mode, err = a.d.AttachNetdevXDP("vxlan0"); return err }))
			if mode != loader.NetdevTC {
				t.Fatalf("vxlan0 (no native XDP) runs %q, want %q", mode, loader.NetdevTC)
			}
		}
	})
	t.Run("client to nodePort on B, local backend", func(t *testing.T) {
		c := dial(t, cli, b.ip.String()+":30080")
		if got := ask(t, c); !strings.HasPrefix(got, cliIP.String()+":") {
			t.Fatalf("backend saw %s, want the client %s", got, cliIP)
		}
	})
	t.Run("pod on A to ClusterIP, backend on B", func(t *testing.T) {
		c := dial(t, pa.ns, vip.String()+":80")
		if got := ask(t, c); !strings.HasPrefix(got, pa.ip.String()+":") {
			t.Fatalf("backend saw %s, want %s", got, pa.ip)
		}
	})
	t.Run("pod to pod across nodes", func(t *testing.T) {
		c := dial(t, pa.ns, pb.ip.String()+":8080")
		if got := ask(t, c); !strings.HasPrefix(got, pa.ip.String()+":") {
			t.Fatalf("backend saw %s, want %s", got, pa.ip)
		}
	})
	egressCases(t, under, cli, a, b, mode)
	t.Run("established nodePort connection survives a datapath restart on both nodes", func(t *testing.T) {
		c := dial(t, cli, a.ip.String()+":30080")
		if got := ask(t, c); !strings.HasPrefix(got, cliIP.String()+":") {
			t.Fatalf("backend saw %s", got)
		}
		for _, n := range []*kdNode{a, b} {
			must(t, n.d.Close())
			n.load(t)
		}
		for i := 0; i < 3; i++ {
			if got := ask(t, c); !strings.HasPrefix(got, cliIP.String()+":") {
				t.Fatalf("after restart, backend saw %s", got)
			}
		}
	})
	for _, n := range []*kdNode{a, b} {
		c, err := n.d.Maps.ReadMetrics()
		must(t, err)
		t.Logf("node %s: verdicts %v drops %v", n.ip, c.Verdicts, c.Drops)
	}
}

// udpEcho answers each datagram on port in ns with the sender address it saw.
func udpEcho(t *testing.T, ns *netns, port int) {
	serveUDP(t, ns, port, func(_ []byte, from net.Addr) []byte { return []byte(from.String()) })
}

// xdpPassOn attaches an XDP program that passes everything to ifname in ns.
func xdpPassOn(t *testing.T, ns *netns, ifname string) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
	must(t, err)
	t.Cleanup(func() { prog.Close() })
	must(t, ns.do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	}))
}

// txPackets reads ifname's transmitted packet count in ns.
func txPackets(t *testing.T, ns *netns, ifname string) uint64 {
	out := strings.TrimSpace(sh(t, "ip", "netns", "exec", ns.name, "cat", "/sys/class/net/"+ifname+"/statistics/tx_packets"))
	n, err := strconv.ParseUint(out, 10, 64)
	must(t, err)
	return n
}

// txChecksumOff turns off transmit checksum offload of ifname (ETHTOOL_STXCSUM).
func txChecksumOff(ifname string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return fmt.Errorf("open socket: %w", err)
	}
	defer unix.Close(fd)
	val := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM}
	var req struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	copy(req.name[:], ifname)
	req.data = uintptr(unsafe.Pointer(&val))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
		return fmt.Errorf("disable tx checksum offload on %s: %w", ifname, e)
	}
	runtime.KeepAlive(&val)
	return nil
}
