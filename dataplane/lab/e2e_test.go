package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/dataplane/lab"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func addPod(t *testing.T, l *lab.Lab, node, name string) lab.Pod {
	t.Helper()
	p, err := l.AddPod(context.Background(), node, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// service creates an echo Service with the given backends and waits until every agent programmed it.
func service(t *testing.T, l *lab.Lab, name string, typ corev1.ServiceType, mutate func(*corev1.Service), backends ...lab.Pod) *corev1.Service {
	t.Helper()
	ctx := context.Background()
	s := lab.EchoService(name, typ)
	if mutate != nil {
		mutate(s)
	}
	out, err := l.CreateService(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetBackends(ctx, "default", name, backends); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.DeleteService(context.Background(), "default", name) })
	return out
}

func nodePorts(s *corev1.Service) (http, udp int) {
	for _, p := range s.Spec.Ports {
		if p.Name == lab.PortHTTP {
			http = int(p.NodePort)
		} else {
			udp = int(p.NodePort)
		}
	}
	return http, udp
}

// eventually retries fn until it succeeds or timeout passes.
func eventually(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkReply(r echo.Reply, wantSource, wantPod string) error {
	if r.SourceIP() != wantSource {
		return fmt.Errorf("echo %s saw source %s, want %s", r.Pod, r.Source, wantSource)
	}
	if wantPod != "" && r.Pod != wantPod {
		return fmt.Errorf("answered by %s, want %s", r.Pod, wantPod)
	}
	return nil
}

// TestRootLabNodePortSourceIP: the outside client reaches every node's NodePort, in tunnel and dsr mode,
// over TCP and UDP, with the backend local to the ingress node or remote, with externalTrafficPolicy
// Cluster and Local, and the echo reports the client's own IP every time.
func TestRootLabNodePortSourceIP(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	backend := addPod(t, l, "node-2", "web")
	for _, mode := range []string{"tunnel", "dsr"} {
		for _, etp := range []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal} {
			name := fmt.Sprintf("np-%s-%s", mode, map[corev1.ServiceExternalTrafficPolicy]string{"Cluster": "cluster", "Local": "local"}[etp])
			svc := service(t, l, name, corev1.ServiceTypeNodePort, func(s *corev1.Service) {
				s.Annotations[agent.ModeAnnotation] = mode
				s.Spec.ExternalTrafficPolicy = etp
			}, backend)
			httpPort, udpPort := nodePorts(svc)
			for _, n := range l.State.Nodes {
				local := n.Name == backend.Node
				t.Run(fmt.Sprintf("%s/%s", name, n.Name), func(t *testing.T) {
					tcpAddr := net.JoinHostPort(n.IP, strconv.Itoa(httpPort))
					udpAddr := net.JoinHostPort(n.IP, strconv.Itoa(udpPort))
					if etp == corev1.ServiceExternalTrafficPolicyLocal && !local {
						// no local endpoint: the node must not forward (kube-proxy drops too)
						time.Sleep(300 * time.Millisecond)
						if r, err := l.HTTP(ctx, l.State.ClientNS, tcpAddr, 700*time.Millisecond); err == nil {
							t.Errorf("eTP Local on a node without endpoints answered: %+v", r)
						}
						return
					}
					err := eventually(3*time.Second, func() error {
						r, err := l.HTTP(ctx, l.State.ClientNS, tcpAddr, time.Second)
						if err != nil {
							return err
						}
						return checkReply(r, l.State.ClientIP, backend.Name)
					})
					if err != nil {
						t.Errorf("TCP %s (backend %s): %v", tcpAddr, map[bool]string{true: "local", false: "remote"}[local], err)
					}
					err = eventually(3*time.Second, func() error {
						r, err := l.UDP(ctx, l.State.ClientNS, udpAddr, time.Second)
						if err != nil {
							return err
						}
						return checkReply(r, l.State.ClientIP, backend.Name)
					})
					if err != nil {
						t.Errorf("UDP %s: %v", udpAddr, err)
					}
				})
			}
		}
	}
	checkMetrics(t, l, "node-1")
}

// checkMetrics asserts the agent's /metrics carries the service, backend, conntrack and datapath series.
func checkMetrics(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	m, err := agentMetrics(context.Background(), l, node)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kubedirect_services ", "kubedirect_backends ", "kubedirect_conntrack_entries ",
		`kubedirect_datapath_packets_total{verdict="dnat"}`, `kubedirect_datapath_drop_packets_total{reason="no_local_backend"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics of %s lack %s", node, want)
		}
	}
}

// TestRootLabPodTraffic: pod to pod across nodes, pod to ClusterIP with a local and a remote backend,
// and a host-network client to a ClusterIP.
func TestRootLabPodTraffic(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	client := addPod(t, l, "node-1", "client")
	near := addPod(t, l, "node-1", "near")
	far := addPod(t, l, "node-3", "far")
	clientNS := client.NetNS

	t.Run("pod-to-pod", func(t *testing.T) {
		for _, p := range []lab.Pod{near, far} {
			r, err := l.HTTP(ctx, clientNS, net.JoinHostPort(p.IP, strconv.Itoa(lab.HTTPPort)), 2*time.Second)
			if err == nil {
				err = checkReply(r, client.IP, p.Name)
			}
			if err != nil {
				t.Errorf("pod %s -> pod %s on %s: %v", client.Name, p.Name, p.Node, err)
			}
		}
	})
	for _, p := range []lab.Pod{near, far} {
		svc := service(t, l, "cip-"+p.Name, corev1.ServiceTypeClusterIP, nil, p)
		t.Run("pod-to-clusterip-"+p.Name, func(t *testing.T) {
			err := eventually(3*time.Second, func() error {
				r, err := l.HTTP(ctx, clientNS, net.JoinHostPort(svc.Spec.ClusterIP, "80"), time.Second)
				if err != nil {
					return err
				}
				return checkReply(r, client.IP, p.Name)
			})
			if err != nil {
				t.Error(err)
			}
			err = eventually(3*time.Second, func() error {
				r, err := l.UDP(ctx, clientNS, net.JoinHostPort(svc.Spec.ClusterIP, "53"), time.Second)
				if err != nil {
					return err
				}
				return checkReply(r, client.IP, p.Name)
			})
			if err != nil {
				t.Errorf("UDP: %v", err)
			}
		})
		t.Run("hostnetwork-to-clusterip-"+p.Name, func(t *testing.T) {
			node, _ := l.Node("node-1")
			err := eventually(3*time.Second, func() error {
				r, err := l.HostNetworkHTTP(ctx, "node-1", "http://"+net.JoinHostPort(svc.Spec.ClusterIP, "80")+"/")
				if err != nil {
					return err
				}
				if r.Pod != p.Name {
					return fmt.Errorf("answered by %s", r.Pod)
				}
				// a host-network client's source is one of node-1's addresses
				if r.SourceIP() != node.IP && r.SourceIP() != "10.244.1.1" {
					return fmt.Errorf("source %s, want node-1's address", r.Source)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRootLabScaleBackends: scaling a Service's backends 1 -> 3 -> 0 is visible to clients within one
// second of the EndpointSlice write.
func TestRootLabScaleBackends(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	pods := []lab.Pod{addPod(t, l, "node-1", "s1"), addPod(t, l, "node-2", "s2"), addPod(t, l, "node-3", "s3")}
	svc := service(t, l, "scale", corev1.ServiceTypeNodePort, nil, pods[0])
	httpPort, _ := nodePorts(svc)
	addr := net.JoinHostPort(l.State.Nodes[0].IP, strconv.Itoa(httpPort))
	if err := eventually(3*time.Second, func() error {
		_, err := l.HTTP(ctx, l.State.ClientNS, addr, time.Second)
		return err
	}); err != nil {
		t.Fatalf("1 backend: %v", err)
	}

	start := time.Now()
	if err := l.SetBackends(ctx, "default", "scale", pods); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 3 && time.Since(start) < time.Second {
		r, err := l.HTTP(ctx, l.State.ClientNS, addr, 500*time.Millisecond)
		if err == nil {
			seen[r.Pod] = true
			if err := checkReply(r, l.State.ClientIP, ""); err != nil {
				t.Error(err)
			}
		}
	}
	if len(seen) < 3 {
		t.Errorf("1 -> 3: within 1s only %v answered", seen)
	} else {
		t.Logf("1 -> 3 backends visible after %v", time.Since(start).Round(time.Millisecond))
	}

	start = time.Now()
	if err := l.SetBackends(ctx, "default", "scale", nil); err != nil {
		t.Fatal(err)
	}
	rejected := false
	var lastErr error
	for !rejected && time.Since(start) < time.Second {
		// a Service without endpoints is rejected (TCP RST), as kube-proxy does
		_, lastErr = l.HTTP(ctx, l.State.ClientNS, addr, 300*time.Millisecond)
		rejected = errors.Is(lastErr, syscall.ECONNREFUSED)
	}
	if !rejected {
		t.Errorf("3 -> 0: not refused 1s after the endpoints were removed (last: %v)", lastErr)
	} else {
		t.Logf("3 -> 0 backends visible after %v", time.Since(start).Round(time.Millisecond))
	}
}

// TestRootLabAgentRestart: an established TCP connection through a NodePort (remote backend, tunnel and
// dsr) keeps working while the agents of the ingress and the backend node restart, and the restarted
// agents adopt the maps without rewriting them.
func TestRootLabAgentRestart(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	backend := addPod(t, l, "node-2", "r1")
	var conns []*echo.Conn
	for _, mode := range []string{"tunnel", "dsr"} {
		svc := service(t, l, "restart-"+mode, corev1.ServiceTypeNodePort, func(s *corev1.Service) {
			s.Annotations[agent.ModeAnnotation] = mode
		}, backend)
		httpPort, _ := nodePorts(svc)
		addr := net.JoinHostPort(l.State.Nodes[0].IP, strconv.Itoa(httpPort))
		var c *echo.Conn
		err := eventually(3*time.Second, func() error {
			var err error
			c, err = l.Dial(ctx, l.State.ClientNS, addr)
			if err != nil {
				return err
			}
			if _, err = c.Get(time.Second); err != nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	for _, node := range []string{"node-1", "node-2"} {
		if err := l.RestartAgent(ctx, node, "tunnel"); err != nil {
			t.Fatal(err)
		}
	}
	// the restarted agents adopted the pinned maps: nothing needed rewriting
	for _, node := range []string{"node-1", "node-2"} {
		st, err := agentStatus(ctx, l, node)
		if err != nil {
			t.Fatal(err)
		}
		if st.MapWrites != 0 || st.Services != 3 {
			t.Errorf("agent %s after restart: %d map writes, %d services (want 0 writes, 3 services)", node, st.MapWrites, st.Services)
		}
	}
	for i, c := range conns {
		r, err := c.Get(2 * time.Second)
		if err != nil {
			t.Errorf("connection %d after agent restarts: %v", i, err)
			continue
		}
		if r.Source != c.LocalAddr().String() || r.Pod != backend.Name {
			t.Errorf("connection %d after restart: reply %+v, want source %s", i, r, c.LocalAddr())
		}
	}
}

// TestRootLabUnsupportedService: a Service the dataplane cannot serve (SCTP, a bad mode annotation) is
// skipped with a Warning Event while the agent keeps serving the others.
func TestRootLabUnsupportedService(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	p := addPod(t, l, "node-1", "u1")
	service(t, l, "bad-mode", corev1.ServiceTypeClusterIP, func(s *corev1.Service) {
		s.Annotations[agent.ModeAnnotation] = "teleport"
	}, p)
	service(t, l, "sctp", corev1.ServiceTypeClusterIP, func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP}}
	})
	good := service(t, l, "good", corev1.ServiceTypeClusterIP, nil, p)
	err := eventually(5*time.Second, func() error {
		evs, err := l.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == "Unsupported" {
				got[e.InvolvedObject.Name] = true
			}
		}
		if !got["bad-mode"] || !got["sctp"] {
			return fmt.Errorf("warning events for %v", got)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if err := eventually(3*time.Second, func() error {
		_, err := l.HTTP(ctx, p.NetNS, net.JoinHostPort(good.Spec.ClusterIP, "80"), time.Second)
		return err
	}); err != nil {
		t.Errorf("good service next to unsupported ones: %v", err)
	}
}

func agentStatus(ctx context.Context, l *lab.Lab, node string) (agent.Status, error) {
	var st agent.Status
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.AgentURL(node)+"/status", nil)
	resp, err := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func agentMetrics(ctx context.Context, l *lab.Lab, node string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.AgentURL(node)+"/metrics", nil)
	resp, err := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestRootLabExternalIPsAndAffinity: externalIPs and LoadBalancer ingress IPs are served like NodePorts
// (the client routes them to node-1; the backend is on node-2 and sees the client's IP), sessionAffinity
// ClientIP keeps a client on one of three backends, and a pod reaches itself through its own Service.
func TestRootLabExternalIPsAndAffinity(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	backend := addPod(t, l, "node-2", "x1")
	n1, _ := l.Node("node-1")
	subnet := netip.MustParsePrefix(l.State.Subnet)
	extIP, lbIP := hostIn(subnet, 200), hostIn(subnet, 201)
	for _, a := range []string{extIP, lbIP} {
		if out, err := exec.Command("ip", "-n", l.State.ClientNS, "route", "add", a+"/32", "via", n1.IP).CombinedOutput(); err != nil {
			t.Logf("%s", out)
			t.Fatalf("client route to %s: %v", a, err)
		}
	}
	svc := service(t, l, "ext", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
		s.Spec.ExternalIPs = []string{extIP}
	}, backend)
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbIP}}
	if _, err := l.Client.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{extIP, lbIP} {
		err := eventually(3*time.Second, func() error {
			r, err := l.HTTP(ctx, l.State.ClientNS, net.JoinHostPort(a, "80"), time.Second)
			if err != nil {
				return err
			}
			return checkReply(r, l.State.ClientIP, backend.Name)
		})
		if err != nil {
			t.Errorf("frontend %s: %v", a, err)
		}
	}

	pods := []lab.Pod{backend, addPod(t, l, "node-1", "x2"), addPod(t, l, "node-3", "x3")}
	aff := service(t, l, "affinity", corev1.ServiceTypeNodePort, func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}, pods...)
	httpPort, _ := nodePorts(aff)
	addr := net.JoinHostPort(n1.IP, strconv.Itoa(httpPort))
	seen := map[string]int{}
	for i := 0; i < 12; i++ {
		err := eventually(3*time.Second, func() error {
			r, err := l.HTTP(ctx, l.State.ClientNS, addr, time.Second)
			if err == nil {
				seen[r.Pod]++
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 1 {
		t.Errorf("sessionAffinity ClientIP: 12 connections spread over %v", seen)
	}

	t.Run("hairpin", func(t *testing.T) {
		self := service(t, l, "self", corev1.ServiceTypeClusterIP, nil, pods[1])
		err := eventually(3*time.Second, func() error {
			r, err := l.HTTP(ctx, pods[1].NetNS, net.JoinHostPort(self.Spec.ClusterIP, "80"), time.Second)
			if err != nil {
				return err
			}
			if r.Pod != pods[1].Name {
				return fmt.Errorf("answered by %s", r.Pod)
			}
			return nil
		})
		if err != nil {
			t.Errorf("pod to its own service: %v", err)
		}
	})
}

func hostIn(p netip.Prefix, host int) string {
	b := p.Masked().Addr().As4()
	b[3] = byte(host)
	return netip.AddrFrom4(b).String()
}

// TestRootLabServicesMapFull: with a services map of 16 entries, Services that do not fit are skipped with
// a ProgramFailed Event (nothing half-written), and the agent stays ready and serves the ones that fit.
// (Skipped Services are retried every 30s; that retry is not exercised here.)
func TestRootLabServicesMapFull(t *testing.T) {
	l := newLabWith(t, lab.Options{ExternalServiceMode: "tunnel", ServicesMapSize: 16})
	ctx := context.Background()
	p := addPod(t, l, "node-1", "f1")
	// each echo Service has 2 ports = 2 ClusterIP frontends; "kubernetes" holds 1 entry
	var svcs []*corev1.Service
	for i := 0; i < 10; i++ {
		svcs = append(svcs, service(t, l, fmt.Sprintf("fill-%d", i), corev1.ServiceTypeClusterIP, nil, p))
	}
	var failed []string
	err := eventually(10*time.Second, func() error {
		evs, err := l.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		failed = failed[:0]
		for _, e := range evs.Items {
			if e.Reason == "ProgramFailed" && e.Source.Host == "node-1" {
				failed = append(failed, e.InvolvedObject.Name)
			}
		}
		if len(failed) < 3 {
			return fmt.Errorf("ProgramFailed events on node-1 for %v, want at least 3 of 10", failed)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := agentStatus(ctx, l, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.Frontends > 16 || st.Services+len(st.Skipped) != 11 || len(st.Skipped) == 0 {
		t.Errorf("status after map full: %+v", st)
	}
	served := 0
	for _, s := range svcs {
		if _, err := l.HTTP(ctx, p.NetNS, net.JoinHostPort(s.Spec.ClusterIP, "80"), 500*time.Millisecond); err == nil {
			served++
		}
	}
	if served != st.Services-1 {
		t.Errorf("%d of the fill services answer, agent programmed %d (+kubernetes)", served, st.Services)
	}
}

// TestRootLabHostNetworkNodePorts: a host-network client reaches a NodePort on 127.0.0.1 and on a node
// address that is not the NIC's, added after the agent started (kube-proxy's iptables mode serves
// NodePorts on every local address and on localhost).
func TestRootLabHostNetworkNodePorts(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	far := addPod(t, l, "node-3", "far")
	svc := service(t, l, "np-hostnet", corev1.ServiceTypeNodePort, nil, far)
	httpPort, _ := nodePorts(svc)
	n1, err := l.Node("node-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"link", "add", "kd-extra", "type", "veth", "peer", "name", "kd-extra-peer"},
		{"addr", "add", "198.51.100.7/32", "dev", "kd-extra"},
		{"link", "set", "kd-extra", "up"},
		{"link", "set", "kd-extra-peer", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", n1.NetNS}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	for _, host := range []string{"127.0.0.1", "198.51.100.7", n1.IP} {
		url := "http://" + net.JoinHostPort(host, strconv.Itoa(httpPort)) + "/"
		err := eventually(5*time.Second, func() error {
			r, err := l.HostNetworkHTTP(ctx, "node-1", url)
			if err != nil {
				return err
			}
			if r.Pod != far.Name {
				return fmt.Errorf("answered by %s, want %s", r.Pod, far.Name)
			}
			return nil
		})
		if err != nil {
			t.Errorf("host-network client on node-1 -> %s: %v", url, err)
		}
	}
}
