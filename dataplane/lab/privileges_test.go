package lab_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/lab"
	"github.com/kubedirect/kubedirect/internal/testutil"
	corev1 "k8s.io/api/core/v1"
)

// TestRootLabAgentLeastPrivilege: agents holding only agent.Capabilities (as the chart's container)
// set the node up, program a Service and answer its NodePort with the client's address kept; their pins
// and the CNI state are private to root; and an agent missing any one of the capabilities fails with
// EPERM, or EACCES from the verifier (so the list is minimal).
func TestRootLabAgentLeastPrivilege(t *testing.T) {
	testutil.RequireRoot(t)
	l := newLabWith(t, lab.Options{AgentCapabilities: agent.Capabilities})
	ctx := context.Background()
	backend := addPod(t, l, "node-2", "web")
	svc := service(t, l, "least-priv", corev1.ServiceTypeNodePort, nil, backend)
	httpPort, udpPort := nodePorts(svc)
	n1 := l.State.Nodes[0]
	nodePortAnswers := func() error {
		return eventually(5*time.Second, func() error {
			r, err := l.HTTP(ctx, l.State.ClientNS, net.JoinHostPort(n1.IP, strconv.Itoa(httpPort)), time.Second)
			if err != nil {
				return err
			}
			if err := checkReply(r, l.State.ClientIP, backend.Name); err != nil {
				return err
			}
			r, err = l.UDP(ctx, l.State.ClientNS, net.JoinHostPort(n1.IP, strconv.Itoa(udpPort)), time.Second)
			if err != nil {
				return err
			}
			return checkReply(r, l.State.ClientIP, backend.Name)
		})
	}
	if err := nodePortAnswers(); err != nil {
		t.Fatalf("NodePort of node-1 to a backend on node-2, agents with only %v: %v", agent.Capabilities, err)
	}

	// the node setup the agent does by sysctl took effect in the node's namespace
	for key, want := range map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/kd-vxlan/rp_filter": "0"} {
		var got []byte
		err := lab.In(n1.NetNS, func() (err error) { got, err = os.ReadFile("/proc/sys/" + key); return err })
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("sysctl %s on node-1 = %q (%v), want %s", key, got, err, want)
		}
	}

	// the pins and the CNI state: only root may enter or read them
	checkMode := func(path string, want os.FileMode) {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			return
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	checkMode(n1.PinDir, 0o700)
	checkMode(filepath.Join(n1.PinDir, "kd_services"), 0o600)
	checkMode(n1.CNIDir, 0o700)
	checkMode(filepath.Join(n1.CNIDir, "node.json"), 0o600)
	n2 := l.State.Nodes[1]
	checkMode(filepath.Join(n2.CNIDir, "ipam"), 0o700)
	checkMode(filepath.Join(n2.CNIDir, "ipam", backend.IP), 0o600)
	_ = filepath.Walk(n1.PinDir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() && fi.Mode().Perm() != 0o700 {
			t.Errorf("pin directory %s: mode %04o, want 0700", path, fi.Mode().Perm())
		}
		if err == nil && !fi.IsDir() && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("pin %s: mode %04o, want no group or other access", path, fi.Mode().Perm())
		}
		return nil
	})

	// the health server listens on the configured address (the node's IP) only
	if err := lab.In(n1.NetNS, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9890", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Errorf("node-1's agent answers on 127.0.0.1:9890; its healthAddr is %s:9890", n1.IP)
	}

	// each capability is needed: without it the agent fails with EPERM (EACCES: the verifier)
	for _, drop := range agent.Capabilities {
		t.Run("without "+drop, func(t *testing.T) {
			if err := l.StopAgent(n1.Name); err != nil {
				t.Fatal(err)
			}
			l.State.AgentCapabilities = slices.DeleteFunc(slices.Clone(agent.Capabilities), func(c string) bool { return c == drop })
			defer func() {
				l.State.AgentCapabilities = agent.Capabilities
				if err := l.RestartAgent(ctx, n1.Name, "tunnel"); err != nil {
					t.Fatalf("agent with all its capabilities again: %v", err)
				}
			}()
			logPath := l.Log("agent-" + n1.Name)
			before, _ := os.Stat(logPath)
			if err := l.StartAgent(ctx, n1.Name, "tunnel"); err != nil {
				t.Fatal(err)
			}
			var line string
			err := eventually(30*time.Second, func() error {
				data, err := os.ReadFile(logPath)
				if err != nil {
					return err
				}
				if before != nil {
					data = data[before.Size():]
				}
				for _, ln := range strings.Split(string(data), "\n") {
					if strings.Contains(ln, "operation not permitted") || strings.Contains(ln, "permission denied") {
						line = ln
						return nil
					}
				}
				return os.ErrNotExist
			})
			if err != nil {
				ready := l.WaitAgentReady(ctx, n1.Name, time.Second) == nil
				t.Fatalf("agent without CAP_%s logged no EPERM or EACCES in 30s (ready: %v): the capability looks unneeded", drop, ready)
			}
			t.Logf("without CAP_%s: %s", drop, line)
		})
	}
	if err := nodePortAnswers(); err != nil {
		t.Errorf("NodePort after the agent got its capabilities back: %v", err)
	}
}
