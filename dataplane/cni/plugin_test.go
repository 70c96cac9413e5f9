package cni

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/kubedirect/kubedirect/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestStoreAllocateRelease(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	cidr := netip.MustParsePrefix("10.1.0.0/29") // .2 .. .6 usable
	var wg sync.WaitGroup
	got := make([]netip.Addr, 5)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep, err := s.Allocate(cidr, Endpoint{ContainerID: string(rune('a' + i)), IfName: "eth0"})
			if err != nil {
				t.Error(err)
			}
			got[i] = ep.IP
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if seen[a] || !cidr.Contains(a) || a == netip.MustParseAddr("10.1.0.1") || a == netip.MustParseAddr("10.1.0.7") {
			t.Fatalf("bad allocation %v in %v", a, got)
		}
		seen[a] = true
	}
	if _, err := s.Allocate(cidr, Endpoint{ContainerID: "z", IfName: "eth0"}); err == nil {
		t.Fatal("expected exhaustion")
	}
	again, err := s.Allocate(cidr, Endpoint{ContainerID: "a", IfName: "eth0"})
	if err != nil || again.IP != got[0] {
		t.Fatalf("re-ADD of a: %v %v, want %v", again.IP, err, got[0])
	}
	if rel, err := s.Release("c", "eth0"); err != nil || len(rel) != 1 {
		t.Fatalf("release: %v %v", rel, err)
	}
	if rel, err := s.Release("c", "eth0"); err != nil || len(rel) != 0 {
		t.Fatalf("second release: %v %v", rel, err)
	}
	if ep, err := s.Allocate(cidr, Endpoint{ContainerID: "y", IfName: "eth0"}); err != nil || ep.IP != got[2] {
		t.Fatalf("reuse: %v %v want %v", ep.IP, err, got[2])
	}
	// a torn file (crash while writing) keeps its address reserved
	if err := os.WriteFile(filepath.Join(s.Dir, "10.1.0.9"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if eps, _ := s.List(); len(eps) != 5 {
		t.Fatalf("list: %d endpoints", len(eps))
	}
}

// TestAgentSocketIsPrivate: only root reaches the agent through its socket (0600 in a 0700 directory),
// even when the directory existed with a looser mode.
func TestAgentSocketIsPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(SocketPath(dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(t, ctx, dir, func(context.Context, Request) Reply { return Reply{Done: true} })
	d, err := os.Stat(filepath.Dir(SocketPath(dir)))
	if err != nil || d.Mode().Perm() != 0o700 {
		t.Errorf("socket dir: %v %v, want 0700", d.Mode(), err)
	}
	s, err := os.Stat(SocketPath(dir))
	if err != nil || s.Mode()&os.ModeSocket == 0 || s.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v %v, want a 0600 socket", s.Mode(), err)
	}
	cancel()
	<-done
}

// TestNotifyGetsTheAgentsAnswer: ADD's request reaches the agent's handler as sent and ADD gets the
// handler's answer, an error answer included.
func TestNotifyGetsTheAgentsAnswer(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Request, 2)
	serve(t, ctx, dir, func(_ context.Context, r Request) Reply {
		got <- r
		if r.Op == OpDel {
			return Reply{Error: "endpoint map full"}
		}
		return Reply{Done: true}
	})
	want := Request{Op: OpAdd, IP: netip.MustParseAddr("10.244.1.5"), HostIfindex: 7}
	rep, err := Notify(dir, want, 5*time.Second)
	if err != nil || !rep.Done {
		t.Fatalf("add: %+v %v", rep, err)
	}
	if r := <-got; r != want {
		t.Fatalf("agent got %+v, want %+v", r, want)
	}
	if _, err := Notify(dir, Request{Op: OpDel, IP: want.IP}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "endpoint map full") {
		t.Fatalf("del: error %v, want the agent's", err)
	}
}

// TestNotifyWithoutAgentFails: no agent listening is an error, not a hang (ADD then goes on).
func TestNotifyWithoutAgentFails(t *testing.T) {
	if _, err := Notify(t.TempDir(), Request{Op: OpAdd, IP: netip.MustParseAddr("10.244.1.5")}, time.Minute); err == nil {
		t.Fatal("no error without an agent")
	}
}

// serve runs Serve until ctx ends and waits for its socket; the channel closes when Serve returned.
func serve(t *testing.T, ctx context.Context, dir string, h Handler) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := Serve(ctx, dir, h); err != nil {
			t.Error(err)
		}
	}()
	for range 500 {
		if _, err := os.Stat(SocketPath(dir)); err == nil {
			return done
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("agent socket never appeared")
	return done
}

func TestConfList(t *testing.T) {
	data, err := ConfList("/d", 1450, "")
	if err != nil || !bytes.Contains(data, []byte(`"type": "kubedirect"`)) || !bytes.Contains(data, []byte(`"mtu": 1450`)) {
		t.Fatalf("%s %v", data, err)
	}
}

func newNS(t *testing.T, name string) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	return "/run/netns/" + name
}

// TestRootCNIAddCheckDel runs ADD, CHECK and DEL in a node namespace for a pod namespace and proves the
// pod is reachable from the node over its veth.
func TestRootCNIAddCheckDel(t *testing.T) {
	testutil.RequireRoot(t)
	id := strings.ReplaceAll(t.Name()[:8], "/", "")
	nodePath := newNS(t, "kdcnit-node-"+id)
	podPath := newNS(t, "kdcnit-pod-"+id)
	dataDir := t.TempDir()
	conf := &NetConf{DataDir: dataDir, AgentWait: "0s"}
	conf.CNIVersion = "1.0.0"
	args := &skel.CmdArgs{ContainerID: "c1", Netns: podPath, IfName: "eth0", Args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1"}

	err := ns.WithNetNSPath(nodePath, func(ns.NetNS) error {
		// the node: a dummy underlay with MTU 1500 and an address to ping from
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "eth0p"}); err != nil {
			return err
		}
		l, _ := netlink.LinkByName("eth0")
		_ = netlink.LinkSetUp(l)
		if p, err := netlink.LinkByName("eth0p"); err == nil {
			_ = netlink.LinkSetUp(p)
		}
		_ = netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 168, 254, 10), Mask: net.CIDRMask(24, 32)}})
		if err := WriteNodeState(dataDir, NodeState{PodCIDR: "10.244.1.0/24"}); err != nil {
			return err
		}
		res, err := Add(conf, args)
		if err != nil {
			return err
		}
		if got := res.IPs[0].Address.String(); got != "10.244.1.2/32" {
			t.Errorf("pod address %s", got)
		}
		// ADD again is idempotent on the address
		if err := Check(conf, args); err != nil {
			t.Errorf("check: %v", err)
		}
		eps, err := Store{Dir: IPAMDir(dataDir)}.List()
		if err != nil || len(eps) != 1 || eps[0].HostIfindex == 0 || eps[0].Pod != "p1" || eps[0].PodMAC == "" {
			t.Errorf("endpoints %+v %v", eps, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// inside the pod: /32, default route via the link-local gateway, MTU 1450
	err = ns.WithNetNSPath(podPath, func(ns.NetNS) error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1450 {
			t.Errorf("pod MTU %d", l.Attrs().MTU)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		var def bool
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(GatewayIP) {
				def = true
			}
		}
		if !def {
			t.Errorf("no default route via %s: %v", GatewayIP, routes)
		}
		// a TCP server in the pod, reached from the node
		ln, err := net.Listen("tcp", "10.244.1.2:7777")
		if err != nil {
			return err
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = c.Write([]byte(c.RemoteAddr().String()))
				c.Close()
			}
			ln.Close()
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = ns.WithNetNSPath(nodePath, func(ns.NetNS) error {
		var d net.Dialer
		c, err := d.DialContext(context.Background(), "tcp", "10.244.1.2:7777")
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "192.168.254.10:") {
			t.Errorf("pod saw %q", buf[:n])
		}
		if err := Del(conf, args); err != nil {
			return err
		}
		if err := Del(conf, args); err != nil {
			t.Errorf("second DEL: %v", err)
		}
		if _, err := netlink.LinkByName(HostVethName("c1", "eth0")); err == nil {
			t.Error("host veth still there after DEL")
		}
		if eps, _ := (Store{Dir: IPAMDir(dataDir)}).List(); len(eps) != 0 {
			t.Errorf("address not released: %v", eps)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// DEL with the netns gone still succeeds
	if err := Del(conf, &skel.CmdArgs{ContainerID: "gone", Netns: "/run/netns/kdcnit-none", IfName: "eth0"}); err != nil {
		t.Errorf("DEL without netns: %v", err)
	}
}
