package loader_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// cgroup2Root is where this machine mounts cgroup v2 (hybrid hierarchy);
// /sys/fs/cgroup on pure v2 hosts.
func cgroup2Root(t *testing.T) string {
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(p, "cgroup.controllers")); err == nil {
				return p
			}
		}
	}
	t.Skip("no cgroup v2 mount")
	return ""
}

// TestRootSockHooks attaches the socket hooks to a cgroup the test creates
// and runs a host-network client in it (a re-exec of this test binary,
// started directly inside the cgroup): TCP and UDP to a ClusterIP reach a
// backend on 127.0.0.1, and the client sees the ClusterIP as its peer
// (getpeername4 / recvmsg4); a NodePort on a node address works the same. A
// Service without endpoints and the reject flag
// refuses connect().
func TestRootSockHooks(t *testing.T) {
	testutil.RequireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cg := filepath.Join(cgroup2Root(t), "kubedirect-test-"+hex.EncodeToString(b))
	must(t, os.Mkdir(cg, 0o755))
	t.Cleanup(func() { os.Remove(cg) })

	d, err := loader.Load(context.Background(), loader.Options{PinDir: loadertest.PinDir(t)})
	must(t, err)
	t.Cleanup(func() { d.DetachCgroup(cg); d.Remove() })
	must(t, d.AttachCgroup(cg))

	tcpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer tcpLn.Close()
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "tcp-backend\n")
			c.Close()
		}
	}()
	udpLn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	must(t, err)
	defer udpLn.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := udpLn.ReadFrom(buf)
			if err != nil {
				return
			}
			udpLn.WriteTo(append([]byte("udp-"), buf[:n]...), from)
		}
	}()
	vip := netip.MustParseAddr("10.96.0.10")
	lo := maps.Addr4(netip.MustParseAddr("127.0.0.1"))
	m := d.Maps
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 1}, maps.BackendValue{Addr: lo, Port: uint16(tcpLn.Addr().(*net.TCPAddr).Port), Flags: maps.BackendLocal | maps.BackendHostNet}))
	must(t, m.UpdateService(maps.NewServiceKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), maps.ServiceValue{ID: 1, Count: 1}))
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 2}, maps.BackendValue{Addr: lo, Port: uint16(udpLn.LocalAddr().(*net.UDPAddr).Port), Flags: maps.BackendLocal | maps.BackendHostNet}))
	must(t, m.UpdateService(maps.NewServiceKey(vip, 53, maps.ProtoUDP, maps.ScopeCluster), maps.ServiceValue{ID: 2, Count: 1}))
	must(t, m.UpdateService(maps.NewServiceKey(vip, 81, maps.ProtoTCP, maps.ScopeCluster), maps.ServiceValue{ID: 3, Flags: maps.SvcReject}))
	// A NodePort on a node address (127.0.0.2 plays the node here).
	must(t, m.AddNodeAddr(netip.MustParseAddr("127.0.0.2")))
	must(t, m.UpdateService(maps.NewServiceKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), maps.ServiceValue{ID: 1, Count: 1}))

	fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, err)
	defer syscall.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSockHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "KD_SOCK_HELPER="+vip.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	out, err := cmd.CombinedOutput()
	t.Logf("helper output:\n%s", out)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	for _, want := range []string{
		"tcp peer=10.96.0.10:80 reply=tcp-backend",
		"udp from=10.96.0.10:53 reply=udp-ping",
		"reject err=connect: operation not permitted",
		"nodeport peer=127.0.0.2:30080 reply=tcp-backend",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q", want)
		}
	}
}

// TestSockHelper is the client TestRootSockHooks runs inside its cgroup.
func TestSockHelper(t *testing.T) {
	vip := os.Getenv("KD_SOCK_HELPER")
	if vip == "" {
		t.Skip("helper process for TestRootSockHooks")
	}
	c, err := net.DialTimeout("tcp4", vip+":80", 3*time.Second)
	if err != nil {
		t.Fatalf("tcp dial: %v", err)
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	fmt.Printf("tcp peer=%s reply=%s\n", c.RemoteAddr(), strings.TrimSpace(string(buf[:n])))
	c.Close()

	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := u.WriteTo([]byte("ping"), &net.UDPAddr{IP: net.ParseIP(vip), Port: 53}); err != nil {
		t.Fatalf("udp send: %v", err)
	}
	n, from, err := u.ReadFrom(buf)
	if err != nil {
		t.Fatalf("udp recv: %v", err)
	}
	fmt.Printf("udp from=%s reply=%s\n", from, buf[:n])

	c, err = net.DialTimeout("tcp4", "127.0.0.2:30080", 3*time.Second)
	if err != nil {
		t.Fatalf("nodeport dial: %v", err)
	}
	n, _ = c.Read(buf)
	fmt.Printf("nodeport peer=%s reply=%s\n", c.RemoteAddr(), strings.TrimSpace(string(buf[:n])))
	c.Close()

	_, err = net.DialTimeout("tcp4", vip+":81", time.Second)
	msg := "<nil>"
	if err != nil {
		msg = err.Error()
		if i := strings.Index(msg, "connect: "); i >= 0 {
			msg = msg[i:]
		}
	}
	fmt.Printf("reject err=%s\n", msg)
}
