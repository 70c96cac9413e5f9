package lab_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/dataplane/lab"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/provision/spec"
	corev1 "k8s.io/api/core/v1"
)

// TestRootLabXDPNodePortKeepsClientAddress: agents with xdp native report "xdp" on their NIC (a veth,
// which has native XDP) in /status and /metrics; the outside client, whose stack leaves checksums to
// the veth's offload as every host's does, reaches a NodePort over TCP and UDP with the backend on
// another node (tunnel and dsr) and the backend sees the client's own address. An agent restarted
// with xdp off reports "tc" and leaves no XDP program on its NIC.
func TestRootLabXDPNodePortKeepsClientAddress(t *testing.T) {
	l := newLabWith(t, lab.Options{ExternalServiceMode: "tunnel", XDP: string(spec.XDPNative)})
	ctx := context.Background()
	for _, n := range l.State.Nodes {
		wantNetdev(t, l, n.Name, loader.NetdevXDP)
	}
	if m, err := agentMetrics(ctx, l, "node-1"); err != nil {
		t.Fatal(err)
	} else if want := `kubedirect_netdev_mode{interface="eth0",mode="xdp"} 1`; !strings.Contains(m, want) {
		t.Errorf("metrics of node-1 lack %s", want)
	}
	backend := addPod(t, l, "node-2", "xweb")
	check := func(t *testing.T, node lab.Node, httpPort, udpPort int) {
		t.Helper()
		for _, c := range []struct {
			proto string
			port  int
			ask   func(ctx context.Context, netns, addr string, timeout time.Duration) (echo.Reply, error)
		}{{"TCP", httpPort, l.HTTP}, {"UDP", udpPort, l.UDP}} {
			addr := net.JoinHostPort(node.IP, strconv.Itoa(c.port))
			if err := eventually(3*time.Second, func() error {
				r, err := c.ask(ctx, l.State.ClientNS, addr, time.Second)
				if err != nil {
					return err
				}
				return checkReply(r, l.State.ClientIP, backend.Name)
			}); err != nil {
				t.Errorf("%s %s: %v", c.proto, addr, err)
			}
		}
	}
	ports := map[string][2]int{}
	for _, mode := range []string{"tunnel", "dsr"} {
		svc := service(t, l, "xdp-"+mode, corev1.ServiceTypeNodePort, func(s *corev1.Service) {
			s.Annotations[agent.ModeAnnotation] = mode
		}, backend)
		httpPort, udpPort := nodePorts(svc)
		ports[mode] = [2]int{httpPort, udpPort}
		t.Run(mode, func(t *testing.T) { check(t, l.State.Nodes[0], httpPort, udpPort) })
	}

	t.Run("xdp off", func(t *testing.T) {
		l.State.XDP = string(spec.XDPOff)
		if err := l.RestartAgent(ctx, "node-1", "tunnel"); err != nil {
			t.Fatal(err)
		}
		wantNetdev(t, l, "node-1", loader.NetdevTC)
		out, err := exec.Command("ip", "-n", l.State.Nodes[0].NetNS, "link", "show", "eth0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link: %v: %s", err, out)
		}
		if strings.Contains(string(out), "xdp") {
			t.Errorf("node-1's eth0 keeps an XDP program with xdp off:\n%s", out)
		}
		check(t, l.State.Nodes[0], ports["tunnel"][0], ports["tunnel"][1])
	})
}

// wantNetdev asserts that node's agent reports mode on its NIC eth0.
func wantNetdev(t *testing.T, l *lab.Lab, node, mode string) {
	t.Helper()
	st, err := agentStatus(context.Background(), l, node)
	if err != nil {
		t.Fatal(err)
	}
	if st.Netdevs["eth0"] != mode {
		t.Errorf("agent %s reports netdevs %v, want eth0 %q", node, st.Netdevs, mode)
	}
}
