package validate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"text/template"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/manifests"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	sigsyaml "sigs.k8s.io/yaml"
)

// Placements of the backend relative to the node whose NodePort is called.
const (
	Local  = "local"
	Remote = "remote"
)

// Policies and protocols the matrix covers.
var (
	Policies  = []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}
	Protocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}
)

// ProbeNode is a node taking part in the proof.
type ProbeNode struct {
	// Name is the Node's name, IP the address the outside client calls.
	Name, IP string
	// Hostname is the node's kubernetes.io/hostname label, which pins the probe pods.
	Hostname string
	// Label is a short name (n0, n1, ...) used in object names and labels.
	Label string
}

// Case is one call of the matrix.
type Case struct {
	Ingress   ProbeNode
	Backend   ProbeNode
	Placement string
	Policy    corev1.ServiceExternalTrafficPolicy
	Protocol  corev1.Protocol
}

// ExpectsReply reports whether the Service must answer: not under policy Local without a backend on the
// ingress node (kube-proxy drops those too).
func (c Case) ExpectsReply() bool {
	return !(c.Policy == corev1.ServiceExternalTrafficPolicyLocal && c.Placement == Remote)
}

// ProbeNodes orders the nodes by name and gives them their short labels; nodes without an address
// are left out.
func ProbeNodes(nodes []corev1.Node) []ProbeNode {
	var out []ProbeNode
	for _, n := range sortedNodes(nodes) {
		ip := NodeIP(&n)
		if ip == "" {
			continue
		}
		host := n.Labels[corev1.LabelHostname]
		if host == "" {
			host = n.Name
		}
		out = append(out, ProbeNode{Name: n.Name, IP: ip, Hostname: host, Label: "n" + strconv.Itoa(len(out))})
	}
	return out
}

// Plan lists the matrix: for every node, its NodePort of the Service whose backend is on that node
// (local) and of the one whose backend is on the next node (remote; none on a one-node cluster), with
// each policy and protocol.
func Plan(nodes []ProbeNode) []Case {
	var out []Case
	for i, in := range nodes {
		backends := []struct {
			placement string
			node      ProbeNode
		}{{Local, in}}
		if len(nodes) > 1 {
			backends = append(backends, struct {
				placement string
				node      ProbeNode
			}{Remote, nodes[(i+1)%len(nodes)]})
		}
		for _, b := range backends {
			for _, pol := range Policies {
				for _, proto := range Protocols {
					out = append(out, Case{Ingress: in, Backend: b.node, Placement: b.placement, Policy: pol, Protocol: proto})
				}
			}
		}
	}
	return out
}

// Observation is what one call of a Case brought back.
type Observation struct {
	Case
	// Reply is the echo's answer, valid when Err is nil.
	Reply echo.Reply
	// Err is why there was no answer.
	Err error
}

// Judge decides a matrix row. expected is the client's source IP as the host-network baseline saw it
// through the ingress node (empty when the baseline failed); nodeIPs maps every node address to its
// node, to name a source NAT. A backend must see exactly the baseline address, and the answer must
// come from the intended backend's node; where no reply is expected, any reply fails.
func Judge(o Observation, expected string, nodeIPs map[string]string) Row {
	r := Row{
		Node: o.Ingress.Name, NodeIP: o.Ingress.IP, Backend: o.Placement, BackendNode: o.Backend.Name,
		Policy: string(o.Policy), Protocol: string(o.Protocol), Seen: NoReply, Expected: expected, Result: Fail,
	}
	if o.Err == nil {
		r.Seen = o.Reply.SourceIP()
	}
	if !o.ExpectsReply() {
		r.Expected = NoReply
		if o.Err != nil {
			r.Result = Pass
		} else {
			r.Detail = fmt.Sprintf("answered by %s on %s though externalTrafficPolicy Local has no backend on this node", o.Reply.Pod, o.Reply.Node)
		}
		return r
	}
	switch {
	case expected == "":
		r.Expected = "?"
		r.Detail = "no baseline: the host-network echo on this node did not answer"
	case o.Err != nil:
		r.Detail = o.Err.Error()
	case r.Seen != expected:
		if n, ok := nodeIPs[r.Seen]; ok {
			r.Detail = fmt.Sprintf("source NATed to node %s's address", n)
		} else {
			r.Detail = "backend saw another source than the client"
		}
	case o.Reply.Node != "" && o.Reply.Node != o.Backend.Name:
		r.Detail = fmt.Sprintf("answered from node %s, want the backend on %s", o.Reply.Node, o.Backend.Name)
	default:
		r.Result = Pass
	}
	return r
}

// Prober is the client outside the cluster.
type Prober interface {
	// Probe asks the echo at addr (ip:port) once over protocol (TCP: HTTP GET, UDP: one datagram).
	Probe(ctx context.Context, protocol corev1.Protocol, addr string) (echo.Reply, error)
}

// HostProber calls from this machine, straight to the node addresses (on kind: over the Docker
// bridge, which does not NAT traffic from the host; never through a published port).
type HostProber struct{}

// Probe implements Prober.
func (HostProber) Probe(ctx context.Context, protocol corev1.Protocol, addr string) (echo.Reply, error) {
	if protocol == corev1.ProtocolUDP {
		return echo.UDP(ctx, addr)
	}
	return echo.GetHTTP(ctx, "http://"+addr+"/validate")
}

// workload parameters of the probe templates in manifests/probe.
type podParams struct {
	Namespace, Name, Role, NodeLabel, Hostname, Image, PullPolicy string
	HostNetwork                                                   bool
	HTTPPort, UDPPort                                             int
}

type serviceParams struct {
	Namespace, Name, NodeLabel, Policy string
	HTTPPort, UDPPort                  int
}

// renderObject executes a probe template and decodes it strictly into obj.
func renderObject(name string, params any, obj any) error {
	t, err := template.ParseFS(manifests.Probe(), name)
	if err != nil {
		return fmt.Errorf("parse probe template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, params); err != nil {
		return fmt.Errorf("render probe template %s: %w", name, err)
	}
	if err := sigsyaml.UnmarshalStrict(buf.Bytes(), obj); err != nil {
		return fmt.Errorf("decode probe template %s: %w", name, err)
	}
	return nil
}

// probeAddr joins an IP and port.
func probeAddr(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

// probeRetryInterval is the pause between calls of a case or baseline that did not answer yet.
const probeRetryInterval = 300 * time.Millisecond

// observe calls c until Judge passes it or timeout ends (one call when no reply is expected), each call
// bounded by callTimeout.
func observe(ctx context.Context, p Prober, c Case, addr, expected string, nodeIPs map[string]string, timeout, callTimeout time.Duration) Row {
	var row Row
	_ = wait.PollUntilContextTimeout(ctx, probeRetryInterval, timeout, true, func(context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		reply, err := p.Probe(cctx, c.Protocol, addr)
		cancel()
		row = Judge(Observation{Case: c, Reply: reply, Err: err}, expected, nodeIPs)
		return row.Result == Pass || !c.ExpectsReply() || expected == "", nil
	})
	return row // the last call's: a timeout or a cancelled ctx leaves it as it was
}

// baseline asks the host-network echo on every node, over both protocols, until it answers or timeout
// ends, and returns the source IP it saw per node and protocol with one check each.
func baseline(ctx context.Context, p Prober, nodes []ProbeNode, httpPort, udpPort int, timeout, callTimeout time.Duration, hint string) (map[string]map[corev1.Protocol]string, []Check) {
	seen := map[string]map[corev1.Protocol]string{}
	var checks []Check
	for _, n := range nodes {
		seen[n.Name] = map[corev1.Protocol]string{}
		for _, proto := range Protocols {
			port := httpPort
			if proto == corev1.ProtocolUDP {
				port = udpPort
			}
			addr := probeAddr(n.IP, int32(port))
			var lastErr error
			_ = wait.PollUntilContextTimeout(ctx, probeRetryInterval, timeout, true, func(context.Context) (bool, error) {
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				reply, err := p.Probe(cctx, proto, addr)
				cancel()
				if lastErr = err; err == nil {
					seen[n.Name][proto] = reply.SourceIP()
				}
				return err == nil, nil
			})
			c := Check{Name: "baseline " + string(proto) + " (host-network echo)", Target: n.Name, Result: Pass}
			if ip := seen[n.Name][proto]; ip != "" {
				c.Detail = "client seen as " + ip + " at " + addr
			} else {
				c.Result, c.Detail = Fail, fmt.Sprintf("%s: %v (%s)", addr, lastErr, hint)
			}
			checks = append(checks, c)
		}
	}
	return seen, checks
}

// errNoNodePort is returned when a Service has no NodePort for a protocol.
var errNoNodePort = errors.New("service has no nodePort")

func nodePort(svc *corev1.Service, proto corev1.Protocol) (int32, error) {
	for _, p := range svc.Spec.Ports {
		if p.Protocol == proto && p.NodePort != 0 {
			return p.NodePort, nil
		}
	}
	return 0, fmt.Errorf("%s/%s %s: %w", svc.Namespace, svc.Name, proto, errNoNodePort)
}
