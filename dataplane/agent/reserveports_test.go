package agent

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kubedirect/kubedirect/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestReservePortsMergesWithWhatIsThere(t *testing.T) {
	cases := map[string]string{
		"\n":                  "30000-32767",
		"8472\n":              "8472,30000-32767",
		"8472,31000-33000\n":  "8472,30000-33000",
		"29000-29999,40000\n": "29000-32767,40000",
		"30000-32767\n":       "30000-32767",
		"10250,30100,30200\n": "10250,30000-32767",
		"32768-32800,1-100\n": "1-100,30000-32800",
	}
	for in, want := range cases {
		p := filepath.Join(t.TempDir(), "ip_local_reserved_ports")
		if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ReservePorts(p, "30000-32767"); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != want+"\n" && !(in == want+"\n" && string(got) == in) {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	if err := ReservePorts(filepath.Join(t.TempDir(), "x"), "30000"); err == nil {
		t.Error("a range without a dash was accepted")
	}
}

// A host process's ephemeral source port must never fall in the NodePort range: the NodePort programs
// would take its replies for NodePort traffic. In a fresh network namespace whose ephemeral range
// overlaps the NodePort range by 8 ports, every port the kernel hands out after ReservePorts lies
// outside it.
func TestRootReservePortsKeepsEphemeralPortsOutOfTheNodePortRange(t *testing.T) {
	testutil.RequireRoot(t)
	type result struct {
		ports []int
		err   error
	}
	done := make(chan result)
	go func() {
		// this thread moves to a new network namespace and is never unlocked: it ends with the goroutine
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNET); r.err != nil {
			return
		}
		if r.err = os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("32760 32770"), 0o644); r.err != nil {
			return
		}
		if r.err = ReservePorts("/proc/sys/net/ipv4/ip_local_reserved_ports", "30000-32767"); r.err != nil {
			return
		}
		for range 4 { // 3 ports of the ephemeral range lie outside the NodePort range
			l, err := net.ListenTCP("tcp4", &net.TCPAddr{})
			if err != nil {
				break
			}
			defer l.Close()
			r.ports = append(r.ports, l.Addr().(*net.TCPAddr).Port)
		}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.ports) == 0 {
		t.Fatal("no ephemeral port at all")
	}
	for _, p := range r.ports {
		if p >= 30000 && p <= 32767 {
			t.Errorf("ephemeral port %d is in the NodePort range (got %v)", p, r.ports)
		}
	}
}
