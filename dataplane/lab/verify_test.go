package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/dataplane/lab"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/provision/observe"
	corev1 "k8s.io/api/core/v1"
)

// labDiff compares node's pinned maps with the desired state from the lab's API server, as verify does
// through the agent pod on a real cluster.
func labDiff(ctx context.Context, t *testing.T, l *lab.Lab, node string) ([]string, *inspect.Dump) {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	c, err := observe.ListCluster(ctx, l.Client)
	if err != nil {
		t.Fatal(err)
	}
	d, err := inspect.Collect(ctx, n.PinDir, l.AgentURL(node)+agentstatus.Path, node)
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.Desired(node, d.Config.Mode)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, diff := range c.Diff(want, d) {
		out = append(out, diff.String())
	}
	return out, d
}

// TestRootLabVerifyNamesCorruptedEntries: once the agents converged, every node's maps match what the
// agent's translation computes from the API server; a frontend deleted from node-1's pinned map and a
// backend slot overwritten on node-2 are then named in user terms (Service port, frontend, backend and
// its node), while the Service still answers where the maps are intact.
func TestRootLabVerifyNamesCorruptedEntries(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	p1, p2 := addPod(t, l, "node-1", "v1"), addPod(t, l, "node-2", "v2")
	svc := service(t, l, "web", corev1.ServiceTypeNodePort, nil, p1, p2)
	httpPort, _ := nodePorts(svc)
	n1, _ := l.Node("node-1")
	if err := eventually(5*time.Second, func() error {
		_, err := l.HTTP(ctx, l.State.ClientNS, net.JoinHostPort(n1.IP, strconv.Itoa(httpPort)), time.Second)
		return err
	}); err != nil {
		t.Fatalf("NodePort before verify: %v", err)
	}
	for _, n := range l.State.Nodes {
		var diffs []string
		if err := eventually(5*time.Second, func() error {
			diffs, _ = labDiff(ctx, t, l, n.Name)
			if len(diffs) > 0 {
				return fmt.Errorf("%d differences", len(diffs))
			}
			return nil
		}); err != nil {
			t.Fatalf("node %s after convergence:\n%s", n.Name, strings.Join(diffs, "\n"))
		}
	}

	// Corrupt node-1: delete the ClusterIP frontend of port 80 behind the agent's back.
	s1, err := maps.Open(n1.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
	if err := s1.DeleteService(maps.NewServiceKey(clusterIP, 80, maps.ProtoTCP, maps.ScopeCluster)); err != nil {
		t.Fatal(err)
	}
	// Corrupt node-2: point the backend slot that holds p1 at an address no pod has.
	n2, _ := l.Node("node-2")
	s2, err := maps.Open(n2.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	p1Addr, wrong := netip.MustParseAddr(p1.IP), netip.MustParseAddr("10.244.1.250")
	var hit maps.BackendKey
	var hitVal maps.BackendValue
	if err := s2.IterateBackends(func(k maps.BackendKey, v maps.BackendValue) bool {
		if netip.AddrFrom4(v.Addr) == p1Addr && v.Port == 8080 && k.Table == maps.TableAll {
			hit, hitVal = k, v
			return false
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if hitVal.Addr == ([4]byte{}) {
		t.Fatalf("node-2 has no backend slot for %s:8080", p1Addr)
	}
	hitVal.Addr = maps.Addr4(wrong)
	if err := s2.UpdateBackend(hit, hitVal); err != nil {
		t.Fatal(err)
	}

	port := "default/web:80/TCP"
	got1, _ := labDiff(ctx, t, l, "node-1")
	if want := fmt.Sprintf("node-1: missing frontend %s ClusterIP %s:80", port, clusterIP); !slices.Contains(got1, want) {
		t.Errorf("node-1 differences lack %q:\n%s", want, strings.Join(got1, "\n"))
	}
	got2, _ := labDiff(ctx, t, l, "node-2")
	for _, want := range []string{
		fmt.Sprintf("node-2: missing backend %s: %s:8080 (node node-1) (all table)", port, p1Addr),
		fmt.Sprintf("node-2: stale backend %s: %s:8080 (node node-1) (all table)", port, wrong),
	} {
		if !slices.Contains(got2, want) {
			t.Errorf("node-2 differences lack %q:\n%s", want, strings.Join(got2, "\n"))
		}
	}
	if got3, _ := labDiff(ctx, t, l, "node-3"); len(got3) != 0 {
		t.Errorf("node-3 was not touched but differs:\n%s", strings.Join(got3, "\n"))
	}
}
