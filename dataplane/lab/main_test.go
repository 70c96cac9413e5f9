package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/lab"
	"github.com/kubedirect/kubedirect/internal/testutil"
	"golang.org/x/sys/unix"
)

// The lab tests need a kubedirect binary (agent, CNI plugin, echo) and etcd + kube-apiserver. TestMain
// builds the first; hack/build-k8s.sh builds (or finds cached) the others, or $KUBEDIRECT_K8S_BIN names them.
var (
	setupOnce sync.Once
	binary    string
	k8sBin    string
	setupErr  error
	tmpDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	os.Exit(code)
}

func setup() {
	if setupErr = lockLabTests(); setupErr != nil {
		return
	}
	tmpDir, setupErr = os.MkdirTemp("", "kubedirect-lab-test-")
	if setupErr != nil {
		return
	}
	binary = filepath.Join(tmpDir, "kubedirect")
	out, err := exec.Command("go", "build", "-o", binary, "github.com/kubedirect/kubedirect/cmd/kubedirect").CombinedOutput()
	if err != nil {
		setupErr = fmt.Errorf("build kubedirect: %v: %s", err, out)
		return
	}
	if k8sBin = os.Getenv("KUBEDIRECT_K8S_BIN"); k8sBin != "" {
		return
	}
	var stdout bytes.Buffer
	cmd := exec.Command("bash", "../../hack/build-k8s.sh", "kube-apiserver", "etcd")
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		setupErr = fmt.Errorf("hack/build-k8s.sh: %v", err)
		return
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	k8sBin = lines[len(lines)-1]
}

// labTestsLock is held for the life of a test process that builds labs. Lab names and underlay subnets
// are unique within one process only (kdt1, kdt2, ...), so two test processes on one machine (two
// packages' root runs, a helper's run beside CI's) would build the same lab twice; the second waits.
// It lives in a variable because an unreachable *os.File is closed by its finalizer, which would drop
// the lock mid-run.
var labTestsLock *os.File

func lockLabTests() error {
	if err := os.MkdirAll(lab.DefaultRunRoot, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(lab.DefaultRunRoot, "tests.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		fmt.Fprintf(os.Stderr, "lab tests: another test process holds %s; waiting for it\n", f.Name())
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	labTestsLock = f
	return nil
}

// labCounter gives every lab of this test binary its own name and underlay subnet.
var (
	labMu      sync.Mutex
	labCounter int
)

// newLab builds a 3-node lab for t and removes it (processes, namespaces, bridge, pins) when t ends,
// whether it passed or not.
func newLab(t *testing.T, mode string) *lab.Lab {
	t.Helper()
	return newLabWith(t, lab.Options{ExternalServiceMode: mode})
}

// newLabWith is newLab with more options (name, subnet, binaries and node count are set here).
func newLabWith(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	labOptions(t, &o)
	o.Nodes = 3
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range l.State.Nodes {
				t.Logf("agent %s log (tail):\n%s", nd.Name, l.LogTail("agent-"+nd.Name, 30))
			}
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// labOptions skips t without root, builds the binaries once, and gives o a lab name and underlay subnet
// of its own and the binaries.
func labOptions(t *testing.T, o *lab.Options) {
	t.Helper()
	testutil.RequireRoot(t)
	setupOnce.Do(setup)
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	labMu.Lock()
	labCounter++
	n := labCounter
	labMu.Unlock()
	o.Name, o.Subnet = fmt.Sprintf("kdt%d", n), netip.MustParsePrefix(fmt.Sprintf("192.168.%d.0/24", 230+n))
	o.Binary, o.K8sBinDir = binary, k8sBin
}
