package loader_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// netns is a network namespace created by a test (testutil.Netns with its loopback up), with its name
// and descriptor as fields for the many `ip -n` calls of these tests.
type netns struct {
	*testutil.Netns
	name string
	fd   int
}

func newNetns(t *testing.T, prefix string) *netns {
	t.Helper()
	tn := testutil.NewNetns(t, strings.TrimSuffix(prefix, "-"))
	tn.IP("link", "set", "lo", "up")
	return &netns{Netns: tn, name: tn.Name, fd: tn.FD()}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do runs fn inside n (testutil.Netns.Do) and returns its error.
func (n *netns) do(fn func() error) error {
	var err error
	n.Do(func() { err = fn() })
	return err
}

func (n *netns) ifindexMAC(t *testing.T, ifname string) (int, [6]byte) {
	t.Helper()
	var idx int
	var mac [6]byte
	if err := n.do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		idx = ifc.Index
		copy(mac[:], ifc.HardwareAddr)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return idx, mac
}

// pod is a pod namespace whose eth0 is paired with host veth hostIf in node.
type pod struct {
	ns      *netns
	ip      netip.Addr
	hostIf  string
	hostIdx int
	hostMAC [6]byte
	mac     [6]byte
}

func addPod(t *testing.T, node *netns, name string, ip netip.Addr) *pod {
	p := &pod{ns: newNetns(t, "kdp-"), ip: ip, hostIf: "h-" + name}
	sh(t, "ip", "-n", node.name, "link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.ns.name)
	// as the CNI plugin: both ends leave room for VXLAN's 50 bytes on a 1500-byte underlay
	sh(t, "ip", "-n", node.name, "link", "set", p.hostIf, "mtu", "1450", "up")
	sh(t, "ip", "-n", p.ns.name, "link", "set", "eth0", "mtu", "1450")
	// as the CNI plugin: the node's stack reaches the pod (replies it un-masquerades, host clients)
	sh(t, "ip", "-n", node.name, "route", "add", ip.String()+"/32", "dev", p.hostIf, "scope", "link")
	p.hostIdx, p.hostMAC = node.ifindexMAC(t, p.hostIf)
	_, p.mac = p.ns.ifindexMAC(t, "eth0")
	n := p.ns.name
	sh(t, "ip", "-n", n, "addr", "add", ip.String()+"/32", "dev", "eth0")
	sh(t, "ip", "-n", n, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", n, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	sh(t, "ip", "-n", n, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	sh(t, "ip", "-n", n, "neigh", "add", "169.254.1.1", "lladdr", net.HardwareAddr(p.hostMAC[:]).String(), "dev", "eth0", "nud", "permanent")
	return p
}

// listenTCP listens on port in ns until the test ends.
func listenTCP(t *testing.T, ns *netns, port int) net.Listener {
	var ln net.Listener
	must(t, ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveTCP runs handle on each connection ln accepts, each in its own goroutine, and closes it after.
func serveTCP(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// serveUDP listens on port in ns until the test ends and answers each datagram with what answer
// returns for it.
func serveUDP(t *testing.T, ns *netns, port int, answer func(payload []byte, from net.Addr) []byte) {
	var pc net.PacketConn
	must(t, ns.do(func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}))
	t.Cleanup(func() { pc.Close() })
	go answerUDP(pc, answer)
}

// answerUDP answers each datagram pc reads with what answer returns for it, until pc closes.
func answerUDP(pc net.PacketConn, answer func(payload []byte, from net.Addr) []byte) {
	buf := make([]byte, 64)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(answer(buf[:n], from), from)
	}
}

// echoServer listens on port in ns and answers each line with the peer
// address it saw.
func echoServer(t *testing.T, ns *netns, port int) {
	serveTCP(listenTCP(t, ns, port), func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := io.WriteString(c, c.RemoteAddr().String()+"\n"); err != nil {
				return
			}
		}
	})
}

// dial connects from ns to addr.
func dial(t *testing.T, ns *netns, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends a line and returns the peer address the server reported.
func ask(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(string(buf[:n]))
}

// TestRootLiveTraffic attaches the programs to veths in namespaces the test
// creates (a node, two pods, an outside client) and sends real TCP through
// them: pod -> ClusterIP -> pod and client -> NodePort -> pod, checking the
// source address the backend sees. It then restarts the datapath (Close,
// Load adopting the pins, attach again) and checks that the established
// connections still work. Runs with tcx and with the clsact fallback.
func TestRootLiveTraffic(t *testing.T) {
	testutil.RequireRoot(t)
	for _, clsact := range []bool{false, true} {
		t.Run(fmt.Sprintf("clsact=%v", clsact), func(t *testing.T) { liveTraffic(t, clsact) })
	}
}

func liveTraffic(t *testing.T, clsact bool) {
	node := newNetns(t, "kdn-")
	cli := newNetns(t, "kdc-")
	nodeIP := netip.MustParseAddr("192.168.77.1")
	cliIP := netip.MustParseAddr("192.168.77.99")
	sh(t, "ip", "-n", node.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", cli.name)
	sh(t, "ip", "-n", node.name, "addr", "add", nodeIP.String()+"/24", "dev", "eth0")
	sh(t, "ip", "-n", node.name, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", cli.name, "addr", "add", cliIP.String()+"/24", "dev", "eth0")
	sh(t, "ip", "-n", cli.name, "link", "set", "eth0", "up")
	p1 := addPod(t, node, "p1", netip.MustParseAddr("10.244.1.10"))
	p2 := addPod(t, node, "p2", netip.MustParseAddr("10.244.1.11"))
	echoServer(t, p2.ns, 8080)

	pin := loadertest.PinDir(t)
	vip := netip.MustParseAddr("10.96.0.10")
	load := func() *loader.Datapath {
		d, err := loader.Load(context.Background(), loader.Options{PinDir: pin, ForceClsact: clsact})
		if err != nil {
			t.Fatal(err)
		}
		if err := node.do(func() error {
			if err := d.AttachNetdev("eth0"); err != nil {
				return err
			}
			for _, p := range []*pod{p1, p2} {
				if err := d.AttachContainer(p.hostIdx); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("attach: %v", err)
		}
		return d
	}
	d := load()
	t.Cleanup(func() {
		_ = node.do(func() error {
			_ = d.DetachNetdev("eth0")
			_ = d.DetachContainer(p1.hostIdx)
			_ = d.DetachContainer(p2.hostIdx)
			return nil
		})
		_ = d.Remove()
	})
	m := d.Maps
	_, nicMAC := node.ifindexMAC(t, "eth0")
	_ = nicMAC
	must(t, m.SetConfig(maps.Config{NodeIP: maps.Addr4(nodeIP), HairpinAddr: maps.Addr4(maps.DefaultHairpinAddr), VXLANPort: 8472}))
	must(t, m.AddNodeAddr(nodeIP))
	for _, p := range []*pod{p1, p2} {
		must(t, m.SetEndpoint(p.ip, maps.EndpointValue{Ifindex: uint32(p.hostIdx), MAC: p.mac, HostMAC: p.hostMAC}))
	}
	be := maps.BackendValue{Addr: maps.Addr4(p2.ip), Port: 8080, Flags: maps.BackendLocal}
	for id, key := range map[uint32]maps.ServiceKey{
		1: maps.NewServiceKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster),
		2: maps.NewServiceKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal),
	} {
		must(t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Table: maps.TableAll}, be))
		must(t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Table: maps.TableLocal}, be))
		must(t, m.UpdateService(key, maps.ServiceValue{ID: id, Count: 1, LocalCount: 1}))
	}

	c1 := dial(t, p1.ns, vip.String()+":80")
	if got := ask(t, c1); !strings.HasPrefix(got, p1.ip.String()+":") {
		t.Fatalf("ClusterIP: backend saw %s, want %s", got, p1.ip)
	}
	if ra := c1.RemoteAddr().String(); ra != vip.String()+":80" {
		t.Fatalf("client's peer is %s", ra)
	}
	c2 := dial(t, cli, nodeIP.String()+":30080")
	if got := ask(t, c2); !strings.HasPrefix(got, cliIP.String()+":") {
		t.Fatalf("NodePort: backend saw %s, want the client %s", got, cliIP)
	}

	// Agent restart: fds closed, pins kept; the new datapath adopts the maps
	// (conntrack included) and swaps its programs into the attachments.
	must(t, d.Close())
	d = load()
	if len(d.Adopted) != len(maps.Names) {
		t.Fatalf("adopted %v", d.Adopted)
	}
	if got := ask(t, c1); !strings.HasPrefix(got, p1.ip.String()+":") {
		t.Fatalf("after restart, ClusterIP: %s", got)
	}
	if got := ask(t, c2); !strings.HasPrefix(got, cliIP.String()+":") {
		t.Fatalf("after restart, NodePort: %s", got)
	}
	n, err := d.Maps.ConntrackCount()
	must(t, err)
	if n < 4 {
		t.Fatalf("conntrack has %d entries, want >= 4", n)
	}
	c, err := d.Maps.ReadMetrics()
	must(t, err)
	t.Logf("verdicts %v drops %v", c.Verdicts, c.Drops)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
