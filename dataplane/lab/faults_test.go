package lab_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/dataplane/lab"
)

// path is one way into a Service that the load below keeps using.
type path struct {
	name, netns, addr string
}

// load keeps a steady mix of flows going through the lab's datapath and counts what fails: long-lived
// TCP connections that send a request every 100 ms, a stream of new TCP connections on every path, and
// a UDP client that keeps its source port (one flow, as a DNS resolver's).
type load struct {
	established  []*echo.Conn
	estNames     []string
	estOK        atomic.Int64
	estFailed    atomic.Int64
	newOK        atomic.Int64
	newFailed    atomic.Int64
	udpOK        atomic.Int64
	udpLost      atomic.Int64
	firstFailure atomic.Value // string
	stop         chan struct{}
	wg           sync.WaitGroup
}

// startLoad opens two long-lived connections per path, then runs the load until stop.
func startLoad(t *testing.T, l *lab.Lab, paths []path, udp *fixedPortUDP) *load {
	t.Helper()
	ctx := context.Background()
	ld := &load{stop: make(chan struct{})}
	for _, p := range paths {
		for range 2 {
			var c *echo.Conn
			err := eventually(5*time.Second, func() error {
				var err error
				if c, err = l.Dial(ctx, p.netns, p.addr); err != nil {
					return err
				}
				if _, err = c.Get(time.Second); err != nil {
					c.Close()
				}
				return err
			})
			if err != nil {
				t.Fatalf("%s: open a connection: %v", p.name, err)
			}
			t.Cleanup(func() { c.Close() })
			ld.established = append(ld.established, c)
			ld.estNames = append(ld.estNames, p.name)
		}
	}
	ld.loop(func() {
		for i, c := range ld.established {
			if _, err := c.Get(2 * time.Second); err != nil {
				ld.fail(&ld.estFailed, fmt.Sprintf("established %s (%s): %v", ld.estNames[i], c.LocalAddr(), err))
			} else {
				ld.estOK.Add(1)
			}
		}
	})
	for _, p := range paths {
		ld.loop(func() {
			if _, err := l.HTTP(ctx, p.netns, p.addr, 2*time.Second); err != nil {
				ld.fail(&ld.newFailed, fmt.Sprintf("new connection %s: %v", p.name, err))
			} else {
				ld.newOK.Add(1)
			}
		})
	}
	if udp != nil {
		ld.loop(func() {
			if _, err := udp.ask(time.Second); err != nil {
				ld.fail(&ld.udpLost, fmt.Sprintf("udp: %v", err))
			} else {
				ld.udpOK.Add(1)
			}
		})
	}
	return ld
}

// loop runs fn every 100 ms until the load stops.
func (ld *load) loop(fn func()) {
	ld.wg.Add(1)
	go func() {
		defer ld.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ld.stop:
				return
			case <-tick.C:
				fn()
			}
		}
	}()
}

func (ld *load) fail(counter *atomic.Int64, what string) {
	counter.Add(1)
	ld.firstFailure.CompareAndSwap(nil, what)
}

// finish stops the load and returns its figures as one line.
func (ld *load) finish() string {
	close(ld.stop)
	ld.wg.Wait()
	s := fmt.Sprintf("established connections %d: %d requests ok, %d failed; new connections %d ok, %d failed; udp %d answered, %d lost",
		len(ld.established), ld.estOK.Load(), ld.estFailed.Load(), ld.newOK.Load(), ld.newFailed.Load(), ld.udpOK.Load(), ld.udpLost.Load())
	if f, ok := ld.firstFailure.Load().(string); ok {
		s += "; first failure: " + f
	}
	return s
}

// faultLab builds a lab with the paths the fault tests load: NodePorts in tunnel and dsr mode reached
// on the node without the backend (remote) and on the node with it (local), and a ClusterIP from a pod
// on a third node; the UDP client uses the first Service's NodePort, which the first path reaches.
// Every NodePort path has a backend of its own: two paths to one backend can give two of the client's
// connections the same reply tuple (the same source port towards two frontends), which the datapath
// drops as ct_collision (a limit in bpf/DATAPATH.md), and these tests are about faults, not that.
func faultLab(t *testing.T) (*lab.Lab, []path, *fixedPortUDP) {
	l := newLab(t, "tunnel")
	client := addPod(t, l, "node-3", "fc")
	var paths []path
	var udpAddr string
	for _, mode := range []string{"tunnel", "dsr"} {
		for i, where := range []string{"remote", "local"} {
			name := "fault-" + mode + "-" + where
			svc := service(t, l, name, corev1.ServiceTypeNodePort, func(s *corev1.Service) {
				s.Annotations[agent.ModeAnnotation] = mode
			}, addPod(t, l, "node-2", name))
			httpPort, udpPort := nodePorts(svc)
			ingress := net.JoinHostPort(l.State.Nodes[i].IP, strconv.Itoa(httpPort)) // node-1: remote, node-2: local
			paths = append(paths, path{"NodePort " + mode + " " + where + " backend", l.State.ClientNS, ingress})
			if udpAddr == "" {
				paths = append(paths, path{"ClusterIP from a pod", client.NetNS, net.JoinHostPort(svc.Spec.ClusterIP, "80")})
				udpAddr = net.JoinHostPort(l.State.Nodes[i].IP, strconv.Itoa(udpPort))
			}
		}
	}
	return l, paths, newFixedPortUDP(t, l.State.ClientNS, udpAddr)
}

// TestRootLabAgentKilledUnderLoad: every node's agent is killed with SIGKILL and started again five
// times while connections run through NodePorts (tunnel and dsr, local and remote backends), a ClusterIP
// and a UDP flow. The programs and maps stay in the kernel, so no established connection may fail and no
// new connection or datagram may be lost.
func TestRootLabAgentKilledUnderLoad(t *testing.T) {
	l, paths, udp := faultLab(t)
	ctx := context.Background()
	ld := startLoad(t, l, paths, udp)
	time.Sleep(time.Second) // a baseline before the first kill
	const kills = 5
	start := time.Now()
	for range kills {
		for _, n := range l.State.Nodes {
			if err := l.KillAgent(n.Name); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond) // no agent anywhere
		for _, n := range l.State.Nodes {
			if err := l.StartAgent(ctx, n.Name, "tunnel"); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range l.State.Nodes {
			if err := l.WaitAgentReady(ctx, n.Name, 30*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second) // traffic after the last restart
	figures := ld.finish()
	t.Logf("agents on %d nodes killed %d times in %s: %s", len(l.State.Nodes), kills, time.Since(start).Round(time.Second), figures)
	if ld.estFailed.Load() != 0 || ld.newFailed.Load() != 0 || ld.udpLost.Load() != 0 {
		t.Errorf("traffic failed while agents were killed: %s\n%s", figures, datapathDrops(l))
	}
	for _, n := range l.State.Nodes {
		st, err := agentStatus(ctx, l, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if st.MapWrites != 0 {
			t.Errorf("agent %s rewrote %d map entries after its restart; it should adopt what the maps hold", n.Name, st.MapWrites)
		}
	}
}

// apiOutage is how long TestRootLabAPIServerOutage keeps the API server down.
const apiOutage = 60 * time.Second

// TestRootLabAPIServerOutage: the API server is stopped for a minute and started again. Meanwhile the
// datapath keeps serving every path; afterwards the agents resume their watches without re-programming
// what did not change (a handful of map writes, not a flush and rewrite of every Service), and a Service
// changed as soon as the API is back is served as changed.
func TestRootLabAPIServerOutage(t *testing.T) {
	l, paths, udp := faultLab(t)
	ctx := context.Background()
	// Services enough that a full rewrite would show in the write counts.
	other := addPod(t, l, "node-1", "f2")
	for i := range 20 {
		service(t, l, fmt.Sprintf("bystander-%d", i), corev1.ServiceTypeClusterIP, nil, other)
	}
	if err := eventually(30*time.Second, func() error {
		for _, n := range l.State.Nodes {
			st, err := agentStatus(ctx, l, n.Name)
			if err != nil {
				return err
			}
			if st.Services < 24 {
				return fmt.Errorf("agent %s programs %d services, want 24", n.Name, st.Services)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, n := range l.State.Nodes {
		st, err := agentStatus(ctx, l, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		before[n.Name] = st.MapWrites
	}

	ld := startLoad(t, l, paths, udp)
	l.StopAPIServer()
	time.Sleep(apiOutage)
	if err := l.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	figures := ld.finish()
	t.Logf("API server down for %s: %s", apiOutage, figures)
	if ld.estFailed.Load() != 0 || ld.newFailed.Load() != 0 || ld.udpLost.Load() != 0 {
		t.Errorf("traffic failed while the API server was down: %s\n%s", figures, datapathDrops(l))
	}

	// The Service changes as soon as the API is back: its backend moves to another node.
	moved := addPod(t, l, "node-3", "f3")
	if err := l.SetBackends(ctx, "default", "fault-tunnel-remote", []lab.Pod{moved}); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	defer func() {
		t.Logf("the changed Service was served %s after the change", time.Since(changed).Round(100*time.Millisecond))
	}()
	if err := eventually(120*time.Second, func() error {
		r, err := l.HTTP(ctx, paths[0].netns, paths[0].addr, 2*time.Second)
		if err != nil {
			return err
		}
		return checkReply(r, l.State.ClientIP, moved.Name)
	}); err != nil {
		t.Fatalf("the Service changed after the outage is not served as changed: %v", err)
	}
	for _, n := range l.State.Nodes {
		st, err := agentStatus(ctx, l, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		writes := st.MapWrites - before[n.Name]
		t.Logf("agent %s: %d map writes from before the outage to the changed Service programmed", n.Name, writes)
		// One Service's two ports change backends: a few slots and frontends. Re-programming the 24
		// Services would take more than 48.
		if writes > 16 {
			t.Errorf("agent %s wrote %d map entries across the outage and one Service change: it re-programmed what did not change", n.Name, writes)
		}
	}
}

// datapathDrops lists every node's non-zero drop counters, to say where failed traffic went.
func datapathDrops(l *lab.Lab) string {
	var b strings.Builder
	for _, n := range l.State.Nodes {
		m, err := agentMetrics(context.Background(), l, n.Name)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", n.Name, err)
			continue
		}
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "kubedirect_datapath_drop") && !strings.HasSuffix(line, " 0") {
				fmt.Fprintf(&b, "%s: %s\n", n.Name, line)
			}
		}
	}
	return b.String()
}
