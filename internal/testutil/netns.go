package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace a test created (named prefix-<random>, so tests never share one); it is
// deleted when the test ends.
type Netns struct {
	Name string
	t    testing.TB
	fd   int
}

// NewNetns creates a network namespace for t. Needs root.
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := &Netns{Name: prefix + "-" + hex.EncodeToString(b), t: t}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.fd = fd
	t.Cleanup(func() { unix.Close(fd) })
	return n
}

// FD is an open descriptor of the namespace (for setns and netlink handles), closed when the test ends.
func (n *Netns) FD() int { return n.fd }

// IP runs `ip -n NAME args...` and fails the test on an error.
func (n *Netns) IP(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip -n %s %v: %v: %s", n.Name, args, err, out)
	}
}

// Do runs fn on a thread switched into the namespace and waits for it.
func (n *Netns) Do(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is not unlocked: Go discards it when this goroutine ends,
		// so it never returns to the pool in the test namespace.
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			n.t.Errorf("setns: %v", err)
			return
		}
		fn()
	}()
	<-done
}
