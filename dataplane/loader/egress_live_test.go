package loader_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/dataplane/masq"
)

// clusterPods is the cluster pod range of the two-node test (both nodes' CIDRs lie in it).
var clusterPods = netip.MustParsePrefix("10.244.0.0/16")

// egressCases runs, on the two nodes of liveOverlay, the paths where pod traffic leaves the pod CIDR:
// it installs the agent's masquerade table on both nodes, a second pod on A (a backend behind NodePorts
// that B forwards to A) and a ClusterIP whose backend is B's host-network server (as kubernetes.default
// to a control plane's :6443).
func egressCases(t *testing.T, a, b *kdNode, mode uint8) {
	for _, n := range []*kdNode{a, b} {
		must(t, masq.Sync(masq.Rules{PodCIDR: n.cidr, NonMasquerade: []netip.Prefix{clusterPods}}, masq.InNetNS(n.ns.fd)))
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
		u.SetDeadline(time.Now().Add(3 * time.Second))
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
