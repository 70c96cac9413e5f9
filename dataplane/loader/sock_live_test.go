package loader_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// sockSetup loads the datapath with a fresh pin directory, creates a test
// cgroup, attaches the socket hooks to it and returns the datapath and an
// open descriptor of the cgroup (for runSockHelper).
func sockSetup(t *testing.T) (*loader.Datapath, int) {
	testutil.RequireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cg := filepath.Join(cgroup2Root(t), "kubedirect-test-"+hex.EncodeToString(b))
	must(t, os.Mkdir(cg, 0o755))
	t.Cleanup(func() { os.Remove(cg) })

	d := loadertest.Load(t, loader.Options{})
	t.Cleanup(func() { _ = d.DetachCgroup(cg) })
	must(t, d.AttachCgroup(cg))
	fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	return d, fd
}

// runSockHelper re-executes this test binary as TestSockHelper, started
// directly inside the cgroup cgfd (and in a new, empty network namespace
// when newNet: a pod), with env added, and returns its output.
func runSockHelper(t *testing.T, cgfd int, newNet bool, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSockHelper$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	if newNet {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	out, err := cmd.CombinedOutput()
	t.Logf("helper %v output:\n%s", env, out)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	return string(out)
}

// sockHelperSays runs the helper (see runSockHelper) and checks that its output holds every line of wants.
func sockHelperSays(t *testing.T, cgfd int, newNet bool, env []string, wants ...string) {
	t.Helper()
	testutil.WantContains(t, "the helper's output", runSockHelper(t, cgfd, newNet, env...), wants...)
}

// TestRootSockHooks attaches the socket hooks to a cgroup the test creates
// and runs a host-network client in it (a re-exec of this test binary,
// started directly inside the cgroup): TCP and UDP to a ClusterIP reach a
// backend on 127.0.0.1, and the client sees the ClusterIP as its peer
// (getpeername4 / recvmsg4); a NodePort on a node address works the same. A
// Service without endpoints and the reject flag
// refuses connect().
func TestRootSockHooks(t *testing.T) {
	d, cgfd := sockSetup(t)

	tcpPort := tcpBackend(t)
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
			_, _ = udpLn.WriteTo(append([]byte("udp-"), buf[:n]...), from)
		}
	}()
	vip := netip.MustParseAddr("10.96.0.10")
	lo := maps.Addr4(netip.MustParseAddr("127.0.0.1"))
	m := d.Maps
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 1}, maps.BackendValue{Addr: lo, Port: tcpPort, Flags: maps.BackendLocal | maps.BackendHostNet}))
	must(t, m.UpdateService(maps.NewServiceKey(vip, 80, maps.ProtoTCP, maps.ScopeCluster), maps.ServiceValue{ID: 1, Count: 1}))
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 2}, maps.BackendValue{Addr: lo, Port: uint16(udpLn.LocalAddr().(*net.UDPAddr).Port), Flags: maps.BackendLocal | maps.BackendHostNet}))
	must(t, m.UpdateService(maps.NewServiceKey(vip, 53, maps.ProtoUDP, maps.ScopeCluster), maps.ServiceValue{ID: 2, Count: 1}))
	must(t, m.UpdateService(maps.NewServiceKey(vip, 81, maps.ProtoTCP, maps.ScopeCluster), maps.ServiceValue{ID: 3, Flags: maps.SvcReject}))
	// A NodePort on a node address (127.0.0.2 plays the node here).
	must(t, m.AddNodeAddr(netip.MustParseAddr("127.0.0.2")))
	must(t, m.UpdateService(maps.NewServiceKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal), maps.ServiceValue{ID: 1, Count: 1}))

	sockHelperSays(t, cgfd, false, []string{"KD_SOCK_HELPER=basic", "KD_SOCK_VIP=" + vip.String()},
		"tcp peer=10.96.0.10:80 reply=tcp-backend",
		"udp from=10.96.0.10:53 reply=udp-ping",
		"reject err=connect: connection refused",
		"nodeport peer=127.0.0.2:30080 reply=tcp-backend",
	)
}

// TestSockHelper is the client TestRootSockHooks runs inside its cgroup.
func TestSockHelper(t *testing.T) {
	switch os.Getenv("KD_SOCK_HELPER") {
	case "":
		t.Skip("helper process for the TestRootSock... tests")
	case "basic":
	default:
		sockHelperMode(t, os.Getenv("KD_SOCK_HELPER"))
		return
	}
	vip := os.Getenv("KD_SOCK_VIP")
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
	_ = u.SetDeadline(time.Now().Add(3 * time.Second))
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

// sockHelperMode runs one of the TestSockHelper client modes (see
// runSockHelper). Environment:
//
//	KD_SOCK_LOUP=1          bring lo up first (a new network namespace has it down)
//	KD_SOCK_BACKENDS=p,...  UDP backends on 127.0.0.1:p in this namespace, replying "be<p>"
//	KD_SOCK_DST=ip:port     the frontend (udp-unconnected, affinity)
//	KD_SOCK_ROUNDS=n        rounds of two datagrams (udp-unconnected)
//	KD_SOCK_TCP, KD_SOCK_UDP=ip:port,...  destinations (refuse, connect)
//
// It prints one line per observation for the parent to check.
func sockHelperMode(t *testing.T, mode string) {
	if os.Getenv("KD_SOCK_LOUP") == "1" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("lo up: %v: %s", err, out)
		}
	}
	for _, p := range splitList(os.Getenv("KD_SOCK_BACKENDS")) {
		ln, err := net.ListenPacket("udp4", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("backend %s: %v", p, err)
		}
		defer ln.Close()
		go udpEchoBackend(ln, "be"+p)
	}
	dst := os.Getenv("KD_SOCK_DST")
	switch mode {
	case "udp-unconnected":
		// musl's resolver: one unconnected socket, sendto() of the A and
		// AAAA queries back to back, then recvfrom() of both answers.
		u, err := net.ListenPacket("udp4", ":0")
		must(t, err)
		defer u.Close()
		ua, err := net.ResolveUDPAddr("udp4", dst)
		must(t, err)
		rounds, _ := strconv.Atoi(os.Getenv("KD_SOCK_ROUNDS"))
		for i := 0; i < rounds; i++ {
			for _, q := range []string{"A", "AAAA"} {
				if _, err := u.WriteTo([]byte(q), ua); err != nil {
					t.Fatalf("sendto: %v", err)
				}
			}
			printReply(u)
			printReply(u)
		}
	case "affinity":
		// Four sockets, one datagram each: ClientIP affinity keeps them on
		// one backend.
		ua, err := net.ResolveUDPAddr("udp4", dst)
		must(t, err)
		for range 4 {
			u, err := net.ListenPacket("udp4", ":0")
			must(t, err)
			if _, err := u.WriteTo([]byte("q"), ua); err != nil {
				t.Fatalf("sendto: %v", err)
			}
			printReply(u)
			u.Close()
		}
	case "udp-steps":
		// One unconnected socket; one datagram per line read from stdin.
		u, err := net.ListenPacket("udp4", ":0")
		must(t, err)
		defer u.Close()
		ua, err := net.ResolveUDPAddr("udp4", dst)
		must(t, err)
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if _, err := u.WriteTo([]byte("q"), ua); err != nil {
				fmt.Printf("reply err=%v\n", err)
				continue
			}
			printReply(u)
		}
	case "refuse":
		for _, d := range splitList(os.Getenv("KD_SOCK_TCP")) {
			fmt.Printf("tcp %s errno=%s\n", d, rawErr(t, syscall.SOCK_STREAM, d))
		}
		for _, d := range splitList(os.Getenv("KD_SOCK_UDP")) {
			fmt.Printf("udp %s errno=%s\n", d, rawErr(t, syscall.SOCK_DGRAM, d))
		}
	case "ask", "connect":
		// ask: echoServer backends, sent a line, answer with the peer address they saw; connect: the
		// backend speaks first.
		say := map[string]string{"ask": "hi\n"}[mode]
		for _, d := range splitList(os.Getenv("KD_SOCK_TCP")) {
			c, err := net.DialTimeout("tcp4", d, 3*time.Second)
			if err != nil {
				fmt.Printf("tcp %s err=%v\n", d, err)
				continue
			}
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			n := 0
			if _, err = io.WriteString(c, say); err == nil {
				n, err = c.Read(buf)
			}
			fmt.Printf("tcp %s peer=%s reply=%s err=%v\n", d, c.RemoteAddr(), strings.TrimSpace(string(buf[:n])), err)
			c.Close()
		}
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// rawErr connects (stream) or sends one datagram (dgram, unconnected) to
// dst with plain syscalls and returns the errno text ("ok" if none).
func rawErr(t *testing.T, typ int, dst string) string {
	ap := netip.MustParseAddrPort(dst)
	fd, err := syscall.Socket(syscall.AF_INET, typ, 0)
	must(t, err)
	defer syscall.Close(fd)
	sa := &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	if typ == syscall.SOCK_STREAM {
		err = syscall.Connect(fd, sa)
	} else {
		err = syscall.Sendto(fd, []byte("q"), 0, sa)
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// tcpBackend serves "tcp-backend" to every connection on a loopback port until the test ends and
// returns the port.
func tcpBackend(t *testing.T) uint16 {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	serveTCP(ln, func(c net.Conn) { fmt.Fprintf(c, "tcp-backend\n") })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// udpEchoBackend answers every datagram with name:payload.
func udpEchoBackend(ln net.PacketConn, name string) {
	answerUDP(ln, func(payload []byte, _ net.Addr) []byte { return []byte(name + ":" + string(payload)) })
}

// udpBackends starts n UDP backends on 127.0.0.1 (this namespace), writes
// them as slots 0..n-1 of service id and returns their ports.
func udpBackends(t *testing.T, m *maps.Set, id uint32, n int) []string {
	var ports []string
	for i := range n {
		ln, err := net.ListenPacket("udp4", "127.0.0.1:0")
		must(t, err)
		t.Cleanup(func() { ln.Close() })
		port := ln.LocalAddr().(*net.UDPAddr).Port
		go udpEchoBackend(ln, "be"+strconv.Itoa(port))
		ports = append(ports, strconv.Itoa(port))
		must(t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Slot: uint16(i)}, maps.BackendValue{
			Addr: maps.Addr4(netip.MustParseAddr("127.0.0.1")), Port: uint16(port), Flags: maps.BackendLocal | maps.BackendHostNet}))
	}
	return ports
}

// printReply reads one datagram from u (3 s at most) and prints it as replies parses it:
// "reply from=ADDR data=DATA", or "reply err=ERR".
func printReply(u net.PacketConn) {
	buf := make([]byte, 64)
	_ = u.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := u.ReadFrom(buf)
	if err != nil {
		fmt.Printf("reply err=%v\n", err)
		return
	}
	fmt.Printf("reply from=%s data=%s\n", from, buf[:n])
}

// replies parses the helper's "reply from=... data=beP:..." lines into
// sources and backends.
func replies(out string) (from, backends []string) {
	for _, l := range strings.Split(out, "\n") {
		var f, d string
		if _, err := fmt.Sscanf(l, "reply from=%s data=%s", &f, &d); err != nil {
			continue
		}
		from = append(from, f)
		backends = append(backends, strings.SplitN(d, ":", 2)[0])
	}
	return from, backends
}

// TestRootSockUDPUnconnectedRepliesFromFrontend is musl's resolver against a
// ClusterIP with three backends: one unconnected socket sends A and AAAA
// queries with sendto() and reads both answers with recvfrom(). Every answer
// must come from the frontend (musl drops answers from other addresses) and
// one socket keeps one backend, as a kube-proxy conntrack entry does. Runs
// as a host-network client and as a pod (its own network namespace, its
// backends on its own loopback).
func TestRootSockUDPUnconnectedRepliesFromFrontend(t *testing.T) {
	d, cgfd := sockSetup(t)
	vip := netip.MustParseAddr("10.96.0.10")
	ports := udpBackends(t, d.Maps, 1, 3)
	must(t, d.Maps.UpdateService(maps.NewServiceKey(vip, 53, maps.ProtoUDP, maps.ScopeCluster), maps.ServiceValue{ID: 1, Count: 3}))
	for _, pod := range []bool{false, true} {
		env := []string{"KD_SOCK_HELPER=udp-unconnected", "KD_SOCK_DST=10.96.0.10:53", "KD_SOCK_ROUNDS=20"}
		if pod {
			env = append(env, "KD_SOCK_LOUP=1", "KD_SOCK_BACKENDS="+strings.Join(ports, ","))
		}
		from, bes := replies(runSockHelper(t, cgfd, pod, env...))
		if len(from) != 40 {
			t.Errorf("pod=%v: %d answers, want 40", pod, len(from))
		}
		bad := 0
		for _, f := range from {
			if f != "10.96.0.10:53" {
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("pod=%v: %d of %d answers came from a backend address instead of 10.96.0.10:53", pod, bad, len(from))
		}
		if n := len(distinct(bes)); n != 1 {
			t.Errorf("pod=%v: one socket reached %d backends %v, want 1", pod, n, distinct(bes))
		}
	}
}

// TestRootSockAffinityPerNetns: with sessionAffinity ClientIP, every socket
// of one pod (network namespace) reaches the same backend, and different pods
// are balanced independently (kube-proxy keys affinity by client IP; before,
// every socket on the node shared one entry).
func TestRootSockAffinityPerNetns(t *testing.T) {
	d, cgfd := sockSetup(t)
	vip := netip.MustParseAddr("10.96.0.10")
	ports := udpBackends(t, d.Maps, 1, 3)
	must(t, d.Maps.UpdateService(maps.NewServiceKey(vip, 53, maps.ProtoUDP, maps.ScopeCluster),
		maps.ServiceValue{ID: 1, Count: 3, Flags: maps.SvcAffinity, AffinityTimeout: 600}))
	seen := map[string]bool{}
	// 12 pods: if each pod picks independently, all of them landing on one
	// of three backends has probability 3^-11.
	for range 12 {
		from, bes := replies(runSockHelper(t, cgfd, true, "KD_SOCK_HELPER=affinity", "KD_SOCK_DST=10.96.0.10:53",
			"KD_SOCK_LOUP=1", "KD_SOCK_BACKENDS="+strings.Join(ports, ",")))
		if len(bes) != 4 || len(distinct(bes)) != 1 {
			t.Fatalf("one pod's four sockets reached %v, want one backend four times", bes)
		}
		for _, f := range from {
			if f != "10.96.0.10:53" {
				t.Errorf("answer from %s, want 10.96.0.10:53", f)
			}
		}
		seen[bes[0]] = true
	}
	if len(seen) < 2 {
		t.Errorf("12 pods all reached %v: affinity is shared between pods", seen)
	}
}

// TestRootSockRefusesWithoutBackend: a pod (its own network namespace, no
// routes, so nothing can leave) connecting to a Service without endpoints,
// or to an internalTrafficPolicy Local Service without an endpoint on this
// node, gets ECONNREFUSED as with kube-proxy's REJECT (not EPERM), and so
// does a UDP sendto(); the ClusterIP is never sent out untranslated.
func TestRootSockRefusesWithoutBackend(t *testing.T) {
	d, cgfd := sockSetup(t)
	m := d.Maps
	vip, vip2 := netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.96.0.11")
	for _, proto := range []uint8{maps.ProtoTCP, maps.ProtoUDP} {
		must(t, m.UpdateService(maps.NewServiceKey(vip, 81, proto, maps.ScopeCluster), maps.ServiceValue{ID: 1, Flags: maps.SvcReject}))
		// iTP Local, one endpoint on another node.
		must(t, m.UpdateService(maps.NewServiceKey(vip2, 80, proto, maps.ScopeCluster), maps.ServiceValue{ID: 2, Count: 1, Flags: maps.SvcInternalLocal}))
	}
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 2}, maps.BackendValue{
		Addr: maps.Addr4(netip.MustParseAddr("10.244.1.5")), NodeIP: maps.Addr4(netip.MustParseAddr("192.0.2.2")), Port: 8080, Flags: maps.BackendRemote}))
	sockHelperSays(t, cgfd, true, []string{"KD_SOCK_HELPER=refuse",
		"KD_SOCK_TCP=10.96.0.10:81,10.96.0.11:80", "KD_SOCK_UDP=10.96.0.10:81,10.96.0.11:80"},
		"tcp 10.96.0.10:81 errno=connection refused",
		"udp 10.96.0.10:81 errno=connection refused",
		"tcp 10.96.0.11:80 errno=connection refused",
		"udp 10.96.0.11:80 errno=connection refused",
	)
}

// TestRootSockExternalFrontendUsesAllBackends: a host-network client of an
// externalTrafficPolicy Local NodePort on its own node reaches the Service's
// endpoints on other nodes too (kube-proxy sends traffic from inside the
// cluster to every endpoint; eTP Local only limits traffic from outside).
func TestRootSockExternalFrontendUsesAllBackends(t *testing.T) {
	d, cgfd := sockSetup(t)
	tcpPort := tcpBackend(t)
	m := d.Maps
	// The one endpoint is in the all-backends table only (not local).
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 1}, maps.BackendValue{
		Addr: maps.Addr4(netip.MustParseAddr("127.0.0.1")), Port: tcpPort, Flags: maps.BackendRemote}))
	must(t, m.AddNodeAddr(netip.MustParseAddr("127.0.0.2")))
	must(t, m.UpdateService(maps.NewServiceKey(netip.Addr{}, 30081, maps.ProtoTCP, maps.ScopeExternal),
		maps.ServiceValue{ID: 1, Count: 1, Flags: maps.SvcExternalLocal}))
	sockHelperSays(t, cgfd, false, []string{"KD_SOCK_HELPER=connect", "KD_SOCK_TCP=127.0.0.2:30081"},
		"tcp 127.0.0.2:30081 peer=127.0.0.2:30081 reply=tcp-backend")
}

// TestRootSockUDPSocketLeavesRemovedBackend: a long-lived UDP socket keeps
// its backend only while it is an endpoint; once the agent removes it, the
// socket's next datagram goes to a remaining one (kube-proxy deletes the
// conntrack entries of a removed UDP endpoint).
func TestRootSockUDPSocketLeavesRemovedBackend(t *testing.T) {
	d, cgfd := sockSetup(t)
	m := d.Maps
	vip := netip.MustParseAddr("10.96.0.10")
	ports := udpBackends(t, m, 1, 2)
	svcKey := maps.NewServiceKey(vip, 53, maps.ProtoUDP, maps.ScopeCluster)
	must(t, m.UpdateService(svcKey, maps.ServiceValue{ID: 1, Count: 2}))

	cmd := exec.Command(os.Args[0], "-test.run=^TestSockHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "KD_SOCK_HELPER=udp-steps", "KD_SOCK_DST=10.96.0.10:53")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	step := func() (from, be string) {
		t.Helper()
		fmt.Fprintln(stdin)
		for lines.Scan() {
			if f, b := replies(lines.Text()); len(f) == 1 {
				return f[0], b[0]
			}
			if strings.HasPrefix(lines.Text(), "reply err=") {
				t.Fatalf("helper: %s", lines.Text())
			}
		}
		t.Fatalf("helper ended: %v", lines.Err())
		return "", ""
	}
	from, first := step()
	if from != "10.96.0.10:53" {
		t.Fatalf("answer from %s, want 10.96.0.10:53", from)
	}
	for range 3 {
		if _, be := step(); be != first {
			t.Fatalf("same socket moved from %s to %s while both are endpoints", first, be)
		}
	}
	// Remove the backend the socket uses, as SetService does: the other one
	// goes to slot 0, the count drops, the last slot is deleted.
	other := "be" + ports[0]
	if other == first {
		other = "be" + ports[1]
	}
	otherPort, _ := strconv.Atoi(strings.TrimPrefix(other, "be"))
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 1, Slot: 0}, maps.BackendValue{
		Addr: maps.Addr4(netip.MustParseAddr("127.0.0.1")), Port: uint16(otherPort), Flags: maps.BackendLocal | maps.BackendHostNet}))
	must(t, m.UpdateService(svcKey, maps.ServiceValue{ID: 1, Count: 1}))
	must(t, m.DeleteBackend(maps.BackendKey{ServiceID: 1, Slot: 1}))
	from, be := step()
	if be != other || from != "10.96.0.10:53" {
		t.Errorf("after removing %s the socket's answer came from %s (%s), want %s (10.96.0.10:53)", first, be, from, other)
	}
}

// TestRootSockLocalhostNodePort: a host-network client reaches a NodePort
// on 127.0.0.1 and on any 127.0.0.0/8 address (kube-proxy's iptables mode
// serves localhost NodePorts), while a pod's 127.0.0.1 stays its own.
func TestRootSockLocalhostNodePort(t *testing.T) {
	d, cgfd := sockSetup(t)
	tcpPort := tcpBackend(t)
	m := d.Maps
	cookie, err := maps.NetnsCookie()
	must(t, err)
	must(t, m.SetConfig(maps.Config{HostNetns: cookie}))
	must(t, m.UpdateBackend(maps.BackendKey{ServiceID: 1}, maps.BackendValue{
		Addr: maps.Addr4(netip.MustParseAddr("127.0.0.1")), Port: tcpPort, Flags: maps.BackendLocal | maps.BackendHostNet}))
	must(t, m.UpdateService(maps.NewServiceKey(netip.Addr{}, 30082, maps.ProtoTCP, maps.ScopeExternal), maps.ServiceValue{ID: 1, Count: 1}))

	sockHelperSays(t, cgfd, false, []string{"KD_SOCK_HELPER=connect", "KD_SOCK_TCP=127.0.0.1:30082,127.0.0.5:30082"},
		"tcp 127.0.0.1:30082 peer=127.0.0.1:30082 reply=tcp-backend",
		"tcp 127.0.0.5:30082 peer=127.0.0.5:30082 reply=tcp-backend",
	)
	// a pod's own loopback has no listener: refused
	sockHelperSays(t, cgfd, true, []string{"KD_SOCK_HELPER=refuse", "KD_SOCK_LOUP=1", "KD_SOCK_TCP=127.0.0.1:30082"},
		"tcp 127.0.0.1:30082 errno=connection refused")
}

// TestRootSockPodThroughContainerPrograms: pods on a node with the tc
// programs on their veths and the socket hooks on their cgroup (as on a
// real node, where the hooks sit at the root cgroup). The hook translates a
// pod's connect() before from_container sees a packet; the two must agree:
// the backend sees the pod's address, the pod sees the ClusterIP as its peer,
// hairpin (a pod reaching itself through its Service) works, iTP Local stays
// on this node, and UDP answers come from the ClusterIP.
func TestRootSockPodThroughContainerPrograms(t *testing.T) {
	d, cgfd := sockSetup(t)
	node := newNetns(t, "kdn-")
	p1 := addPod(t, node, "p1", netip.MustParseAddr("10.244.1.10"))
	p2 := addPod(t, node, "p2", netip.MustParseAddr("10.244.1.11"))
	p3 := addPod(t, node, "p3", netip.MustParseAddr("10.244.1.12"))
	pods := []*pod{p1, p2, p3}
	must(t, node.do(func() error {
		for _, p := range pods {
			if err := d.AttachContainer(p.hostIdx); err != nil {
				return err
			}
		}
		return nil
	}))
	t.Cleanup(func() {
		_ = node.do(func() error {
			for _, p := range pods {
				_ = d.DetachContainer(p.hostIdx)
			}
			return nil
		})
	})
	echoServer(t, p1.ns, 8080)
	echoServer(t, p2.ns, 8080)
	for _, p := range []*pod{p2, p3} {
		var ln net.PacketConn
		must(t, p.ns.do(func() (err error) { ln, err = net.ListenPacket("udp4", ":5353"); return err }))
		t.Cleanup(func() { ln.Close() })
		go udpEchoBackend(ln, "be"+p.ip.String())
	}
	m := d.Maps
	must(t, m.SetConfig(maps.Config{NodeIP: maps.Addr4(netip.MustParseAddr("192.168.77.1")), HairpinAddr: maps.Addr4(maps.DefaultHairpinAddr), VXLANPort: 8472}))
	for _, p := range pods {
		must(t, m.SetEndpoint(p.ip, maps.EndpointValue{Ifindex: uint32(p.hostIdx), MAC: p.mac, HostMAC: p.hostMAC}))
	}
	local := func(p *pod, port uint16) maps.BackendValue {
		return maps.BackendValue{Addr: maps.Addr4(p.ip), Port: port, Flags: maps.BackendLocal}
	}
	svc := func(id uint32, vip string, port uint16, proto uint8, flags uint32, all, loc []maps.BackendValue) {
		for i, b := range all {
			must(t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Slot: uint16(i), Table: maps.TableAll}, b))
		}
		for i, b := range loc {
			must(t, m.UpdateBackend(maps.BackendKey{ServiceID: id, Slot: uint16(i), Table: maps.TableLocal}, b))
		}
		must(t, m.UpdateService(maps.NewServiceKey(netip.MustParseAddr(vip), port, proto, maps.ScopeCluster),
			maps.ServiceValue{ID: id, Count: uint16(len(all)), LocalCount: uint16(len(loc)), Flags: flags}))
	}
	svc(1, "10.96.0.10", 80, maps.ProtoTCP, 0, []maps.BackendValue{local(p2, 8080)}, []maps.BackendValue{local(p2, 8080)})
	udpBes := []maps.BackendValue{local(p2, 5353), local(p3, 5353)}
	svc(2, "10.96.0.10", 53, maps.ProtoUDP, 0, udpBes, udpBes)
	svc(3, "10.96.0.12", 80, maps.ProtoTCP, 0, []maps.BackendValue{local(p1, 8080)}, []maps.BackendValue{local(p1, 8080)})
	// iTP Local: p2 here, and an endpoint on another node (no tunnel: a
	// packet sent there would be lost).
	remote := maps.BackendValue{Addr: maps.Addr4(netip.MustParseAddr("10.244.2.5")), NodeIP: maps.Addr4(netip.MustParseAddr("192.168.77.2")), Port: 8080, Flags: maps.BackendRemote}
	svc(4, "10.96.0.13", 80, maps.ProtoTCP, maps.SvcInternalLocal, []maps.BackendValue{remote, local(p2, 8080)}, []maps.BackendValue{local(p2, 8080)})

	inPod := func(env ...string) string {
		t.Helper()
		cmd := exec.Command("nsenter", "--net=/run/netns/"+p1.ns.name, os.Args[0], "-test.run=^TestSockHelper$", "-test.v")
		cmd.Env = append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		out, err := cmd.CombinedOutput()
		t.Logf("helper in p1 %v:\n%s", env, out)
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		return string(out)
	}
	out := inPod("KD_SOCK_HELPER=ask", "KD_SOCK_TCP=10.96.0.10:80,10.96.0.12:80,10.96.0.13:80,10.96.0.13:80,10.96.0.13:80,10.96.0.13:80")
	testutil.WantContains(t, "pod p1's helper output", out,
		"tcp 10.96.0.10:80 peer=10.96.0.10:80 reply=10.244.1.10:",
		"tcp 10.96.0.12:80 peer=10.96.0.12:80 reply=",
	)
	if n := strings.Count(out, "tcp 10.96.0.13:80 peer=10.96.0.13:80 reply=10.244.1.10:"); n != 4 {
		t.Errorf("iTP Local: %d of 4 connections reached p2 from p1", n)
	}
	from, bes := replies(inPod("KD_SOCK_HELPER=udp-unconnected", "KD_SOCK_DST=10.96.0.10:53", "KD_SOCK_ROUNDS=10"))
	if len(from) != 20 || len(distinct(from)) != 1 || from[0] != "10.96.0.10:53" || len(distinct(bes)) != 1 {
		t.Errorf("UDP from p1: answers from %v by %v, want 20 from 10.96.0.10:53 by one backend", distinct(from), distinct(bes))
	}
}

func distinct(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
