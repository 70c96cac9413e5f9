package loader_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/dataplane/masq"
)

// clusterPods is the cluster pod range of the two-node test (both nodes' CIDRs lie in it).
var clusterPods = netip.MustParsePrefix("10.244.0.0/16")

// egressCases runs, on the two nodes of liveOverlay, the paths where pod traffic leaves the pod CIDR:
// it installs the agent's masquerade table on both nodes, a second pod on A (a backend behind NodePorts
// that B forwards to A) and a ClusterIP whose backend is B's host-network server (as kubernetes.default
// to a control plane's :6443).
//
// The underlay (a bridge in namespace under) then stops carrying fragments between the nodes, as
// underlays that drop or mangle them, and full-size transfers and DF datagrams check the tunnel MTU.
func egressCases(t *testing.T, under, cli *netns, a, b *kdNode, mode uint8) {
	for _, n := range []*kdNode{a, b} {
		must(t, masq.Sync(masq.Rules{PodCIDR: n.cidr, NonMasquerade: []netip.Prefix{clusterPods}, NodeAddr: n.ip,
			NodePortFirst: 30000, NodePortLast: 32767},
			masq.InNetNS(n.ns.fd)))
		sh(t, "ip", "netns", "exec", n.ns.name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	}
	pa := a.pods[0]
	be := addPod(t, a.ns, "Ab", netip.MustParseAddr("10.244.1.11"))
	a.pods = append(a.pods, be)
	must(t, a.ns.do(func() error { return a.d.AttachContainer(be.hostIdx) }))
	must(t, a.d.Maps.SetEndpoint(be.ip, maps.EndpointValue{Ifindex: uint32(be.hostIdx), MAC: be.mac, HostMAC: be.hostMAC}))
	echoServer(t, be.ns, 8080)
	udpEcho(t, be.ns, 5353)

	// NodePorts 30081/tcp and 30054/udp with their only backend on A.
	for _, s := range []struct {
		id    uint32
		port  uint16
		proto uint8
		bport uint16
	}{{10, 30081, maps.ProtoTCP, 8080}, {11, 30054, maps.ProtoUDP, 5353}} {
		key := []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, s.port, s.proto, maps.ScopeExternal)}
		v := maps.BackendValue{Addr: maps.Addr4(be.ip), Port: s.bport, Flags: maps.BackendLocal}
		_, _, err := a.d.Maps.SetService(s.id, key, nil, maps.ServiceValue{}, []maps.BackendValue{v}, 0, 0)
		must(t, err)
		v.Flags, v.NodeIP = maps.BackendRemote, maps.Addr4(a.ip)
		_, _, err = b.d.Maps.SetService(s.id, key, nil, maps.ServiceValue{}, []maps.BackendValue{v}, 0, 0)
		must(t, err)
	}
	// ClusterIP 10.96.0.1:443 -> B's host-network server :9090, programmed on A.
	apiVIP := netip.MustParseAddr("10.96.0.1")
	hostBE := maps.BackendValue{Addr: maps.Addr4(b.ip), Port: 9090, NodeIP: maps.Addr4(b.ip), Flags: maps.BackendRemote | maps.BackendHostNet}
	_, _, err := a.d.Maps.SetService(12, []maps.ServiceKey{maps.NewServiceKey(apiVIP, 443, maps.ProtoTCP, maps.ScopeCluster)},
		nil, maps.ServiceValue{}, []maps.BackendValue{hostBE}, 0, 0)
	must(t, err)

	t.Run("pod to another node's address leaves with its node's address", func(t *testing.T) {
		c := dial(t, pa.ns, b.ip.String()+":9090")
		if got := ask(t, c); !strings.HasPrefix(got, a.ip.String()+":") {
			t.Fatalf("server on B saw %s, want node A %s", got, a.ip)
		}
	})
	t.Run("host client to a pod on another node, tcp and udp (replies not masqueraded)", func(t *testing.T) {
		// as the agent: the node's stack reaches remote pod CIDRs through the overlay
		sh(t, "ip", "-n", a.ns.name, "link", "set", "vxlan0", "arp", "off")
		sh(t, "ip", "-n", a.ns.name, "route", "replace", b.cidr.String(), "dev", "vxlan0", "src", a.ip.String())
		c := dial(t, a.ns, b.pods[0].ip.String()+":8080")
		if got := ask(t, c); !strings.HasPrefix(got, a.ip.String()+":") {
			t.Fatalf("pod saw %s, want node A %s", got, a.ip)
		}
		got, from := udpAsk(t, a.ns, b.pods[0].ip.String()+":5353")
		if !strings.HasPrefix(got, a.ip.String()+":") || from != b.pods[0].ip.String()+":5353" {
			t.Fatalf("udp reply %q from %s", got, from)
		}
	})
	t.Run("pod with a source port in the NodePort range reaches another node", func(t *testing.T) {
		// 30081 is a NodePort on A: a reply to A:30081 would be taken for a NodePort flow
		var c net.Conn
		if err := pa.ns.do(func() (err error) {
			d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{Port: 30081}}
			c, err = d.Dial("tcp4", b.ip.String()+":9090")
			return err
		}); err != nil {
			t.Fatalf("dial from port 30081: %v", err)
		}
		defer c.Close()
		got := ask(t, c)
		ap, err := netip.ParseAddrPort(got)
		if err != nil || ap.Addr() != a.ip || ap.Port() < 32768 {
			t.Fatalf("server on B saw %s, want node A %s with a port above the NodePort range", got, a.ip)
		}
	})
	t.Run("pod to ClusterIP with a host-network backend on another node", func(t *testing.T) {
		c := dial(t, pa.ns, apiVIP.String()+":443")
		if got := ask(t, c); !strings.HasPrefix(got, a.ip.String()+":") {
			t.Fatalf("backend saw %s, want node A %s", got, a.ip)
		}
		if ra := c.RemoteAddr().String(); ra != apiVIP.String()+":443" {
			t.Fatalf("client's peer %s", ra)
		}
	})
	t.Run("pod to another node's nodePort, backend on the pod's own node (tcp)", func(t *testing.T) {
		c := dial(t, pa.ns, b.ip.String()+":30081")
		for i := 0; i < 3; i++ {
			if got := ask(t, c); !strings.HasPrefix(got, a.ip.String()+":") {
				t.Fatalf("backend saw %s, want node A %s", got, a.ip)
			}
		}
	})
	t.Run("pod to another node's nodePort, backend on the pod's own node (udp)", func(t *testing.T) {
		got, from := udpAsk(t, pa.ns, b.ip.String()+":30054")
		if !strings.HasPrefix(got, a.ip.String()+":") || from != b.ip.String()+":30054" {
			t.Fatalf("reply %q from %s; want node A's address from %s:30054", got, from, b.ip)
		}
	})
	t.Run("host client to another node's nodePort, backend on its own node (udp)", func(t *testing.T) {
		got, from := udpAsk(t, a.ns, b.ip.String()+":30054")
		if !strings.HasPrefix(got, a.ip.String()+":") || from != b.ip.String()+":30054" {
			t.Fatalf("reply %q from %s; want node A's address from %s:30054", got, from, b.ip)
		}
	})
	t.Run("host client to another node's nodePort, backend on its own node (tcp)", func(t *testing.T) {
		c := dial(t, a.ns, b.ip.String()+":30081")
		if got := ask(t, c); !strings.HasPrefix(got, a.ip.String()+":") {
			t.Fatalf("backend saw %s, want node A %s", got, a.ip)
		}
	})
	mtuCases(t, under, cli, a, b)
}

// mtuCases: the nodes' configs get the tunnel MTU the agent writes (underlay 1500 - 50), the
// underlay drops fragments between node addresses, and the client sends full-size TCP and DF UDP
// through NodePorts whose backends are on the other node.
func mtuCases(t *testing.T, under, cli *netns, a, b *kdNode) {
	for _, n := range []*kdNode{a, b} {
		c, err := n.d.Maps.GetConfig()
		must(t, err)
		c.TunnelMTU = 1450
		must(t, n.d.Maps.SetConfig(c))
	}
	nodes := fmt.Sprintf("{ %s, %s }", a.ip, b.ip)
	sh(t, "ip", "netns", "exec", under.name, "nft", "add table bridge kdtest; "+
		"add chain bridge kdtest underlay { type filter hook forward priority 0 ; } ; "+
		"add rule bridge kdtest underlay ip saddr "+nodes+" ip daddr "+nodes+" ip frag-off & 0x3fff != 0 counter drop")
	pb := b.pods[0]
	copyServer(t, pb.ns, 8090)
	copyServer(t, b.ns, 9091)
	for _, s := range []struct {
		id, port uint16
		be       maps.BackendValue
	}{
		{20, 30082, maps.BackendValue{Addr: maps.Addr4(pb.ip), Port: 8090}},
		{21, 30091, maps.BackendValue{Addr: maps.Addr4(b.ip), Port: 9091, Flags: maps.BackendHostNet}},
	} {
		key := []maps.ServiceKey{maps.NewServiceKey(netip.Addr{}, s.port, maps.ProtoTCP, maps.ScopeExternal)}
		v := s.be
		v.Flags |= maps.BackendLocal
		_, _, err := b.d.Maps.SetService(uint32(s.id), key, nil, maps.ServiceValue{}, []maps.BackendValue{v}, 0, 0)
		must(t, err)
		v = s.be
		v.Flags |= maps.BackendRemote
		v.NodeIP = maps.Addr4(b.ip)
		_, _, err = a.d.Maps.SetService(uint32(s.id), key, nil, maps.ServiceValue{}, []maps.BackendValue{v}, 0, 0)
		must(t, err)
	}
	for _, c := range []struct{ name, addr string }{
		{"pod", a.ip.String() + ":30082"},
		{"host-network", a.ip.String() + ":30091"},
	} {
		t.Run("full-size TCP both ways through a nodePort, "+c.name+" backend on the other node", func(t *testing.T) {
			roundTrip(t, cli, c.addr, 1<<20)
		})
	}
	// UDP 5454 on B's pod answers with 8,000 bytes: NodePort 30056 and ClusterIP 10.96.0.20:5454.
	bigUDP(t, pb.ns, 5454, 8000)
	bigVIP := netip.MustParseAddr("10.96.0.20")
	for _, n := range []*kdNode{a, b} {
		v := maps.BackendValue{Addr: maps.Addr4(pb.ip), Port: 5454, Flags: maps.BackendLocal}
		if n == a {
			v.Flags, v.NodeIP = maps.BackendRemote, maps.Addr4(b.ip)
		}
		_, _, err := n.d.Maps.SetService(22, []maps.ServiceKey{
			maps.NewServiceKey(netip.Addr{}, 30056, maps.ProtoUDP, maps.ScopeExternal),
			maps.NewServiceKey(bigVIP, 5454, maps.ProtoUDP, maps.ScopeCluster),
		}, nil, maps.ServiceValue{}, []maps.BackendValue{v}, 0, 0)
		must(t, err)
	}
	for _, c := range []struct {
		name, addr string
		ns         *netns
	}{
		{"client through a nodePort", a.ip.String() + ":30056", cli},
		{"pod through a ClusterIP", bigVIP.String() + ":5454", a.pods[0].ns},
	} {
		t.Run("8000-byte UDP reply arrives whole, "+c.name, func(t *testing.T) {
			var n int
			var from string
			if err := c.ns.do(func() error {
				u, err := net.ListenPacket("udp4", ":0")
				if err != nil {
					return err
				}
				defer u.Close()
				dst, _ := net.ResolveUDPAddr("udp4", c.addr)
				buf := make([]byte, 65536)
				for i := 0; i < 3; i++ { // the first datagram may race neighbour resolution
					_ = u.SetDeadline(time.Now().Add(time.Second))
					if _, err := u.WriteTo([]byte("big"), dst); err != nil {
						return err
					}
					var src net.Addr
					n, src, err = u.ReadFrom(buf)
					if err == nil {
						from = src.String()
						return nil
					}
				}
				return err
			}); err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if n != 8000 || from != c.addr {
				t.Fatalf("got %d bytes from %s, want 8000 from %s", n, from, c.addr)
			}
		})
	}
	t.Run("DF datagram too big for the tunnel: the client learns the tunnel MTU", func(t *testing.T) {
		if err := cli.do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
				return err
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 30053, Addr: a.ip.As4()}); err != nil {
				return err
			}
			msg := make([]byte, 1500-28)
			for i := 0; i < 20; i++ {
				if _, err := unix.Write(fd, msg); errors.Is(err, syscall.EMSGSIZE) {
					mtu, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
					if err != nil {
						return err
					}
					if mtu != 1450 {
						return fmt.Errorf("path MTU %d, want 1450", mtu)
					}
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			mtu, _ := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
			return fmt.Errorf("1472-byte DF datagrams still accepted (path MTU %d): no fragmentation needed came back", mtu)
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// bigUDP answers every datagram on port in ns with size bytes.
func bigUDP(t *testing.T, ns *netns, port, size int) {
	reply := bytes.Repeat([]byte("x"), size)
	serveUDP(t, ns, port, func([]byte, net.Addr) []byte { return reply })
}

// copyServer echoes every byte back on each connection to port in ns.
func copyServer(t *testing.T, ns *netns, port int) {
	serveTCP(listenTCP(t, ns, port), func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// roundTrip sends n random bytes from ns to addr (a copyServer) and checks they all come back.
func roundTrip(t *testing.T, ns *netns, addr string, n int) {
	t.Helper()
	c := dial(t, ns, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	data := make([]byte, n)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		errc <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes came back different", n)
	}
}

// udpAsk sends one datagram from ns to addr and returns the reply and its source.
func udpAsk(t *testing.T, ns *netns, addr string) (string, string) {
	t.Helper()
	var got, from string
	if err := ns.do(func() error {
		u, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer u.Close()
		_ = u.SetDeadline(time.Now().Add(3 * time.Second))
		dst, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		if _, err := u.WriteTo([]byte("hi"), dst); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, src, err := u.ReadFrom(buf)
		if err != nil {
			return err
		}
		got, from = string(buf[:n]), src.String()
		return nil
	}); err != nil {
		t.Fatalf("udp to %s: %v", addr, err)
	}
	return got, from
}
