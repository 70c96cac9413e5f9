package inspect

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/provision/spec"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Cluster is what the API server says, the input of Desired and of the names in tables.
type Cluster struct {
	Nodes     []*corev1.Node
	Services  []*corev1.Service
	Slices    []*discoveryv1.EndpointSlice
	Pods      []*corev1.Pod
	nodeByIP  map[netip.Addr]string
	podByIP   map[netip.Addr]string
	portNames map[maps.ServiceKey]string
}

// NodeName is the node that has address ip, or "".
func (c *Cluster) NodeName(ip netip.Addr) string {
	if c.nodeByIP == nil {
		c.nodeByIP = map[netip.Addr]string{}
		for _, n := range c.Nodes {
			for _, a := range agent.NodeInfoOf(n).Addrs {
				c.nodeByIP[a] = n.Name
			}
		}
	}
	return c.nodeByIP[ip]
}

// PodName is namespace/name of the (non-host-network) pod with address ip, or "".
func (c *Cluster) PodName(ip netip.Addr) string {
	if c.podByIP == nil {
		c.podByIP = map[netip.Addr]string{}
		for _, p := range c.Pods {
			if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			for _, s := range p.Status.PodIPs {
				if a, err := netip.ParseAddr(s.IP); err == nil {
					c.podByIP[a] = p.Namespace + "/" + p.Name
				}
			}
		}
	}
	return c.podByIP[ip]
}

// PortName names the Service port of frontend key k ("namespace/name:port/PROTO"), or "".
func (c *Cluster) PortName(k maps.ServiceKey) string {
	if c.portNames == nil {
		c.portNames = map[maps.ServiceKey]string{}
		// Frontend keys do not depend on the node: any topology names them.
		topo := c.topology("")
		for _, svc := range c.Services {
			st, err := agent.Translate(svc, nil, &topo)
			if err != nil {
				continue
			}
			for _, p := range st.Ports {
				for fk := range p.Frontends {
					c.portNames[fk] = p.Name
				}
			}
		}
	}
	return c.portNames[k]
}

func (c *Cluster) topology(self string) agent.Topology {
	topo := agent.Topology{Nodes: map[string]agent.NodeInfo{}}
	for _, n := range c.Nodes {
		info := agent.NodeInfoOf(n)
		topo.Nodes[n.Name] = info
		if n.Name == self {
			topo.Self, topo.Zone = info, n.Labels[corev1.LabelTopologyZone]
		}
	}
	return topo
}

// FrontendKind is how a user calls a frontend: ClusterIP, NodePort or External (external IP or load
// balancer address).
func FrontendKind(f Frontend) string {
	switch {
	case f.Scope == "cluster":
		return "ClusterIP"
	case !f.Address.IsValid():
		return "NodePort"
	}
	return "External"
}

// FrontendAddr prints a frontend's address and port ("*:30080" for a NodePort).
func FrontendAddr(f Frontend) string {
	if !f.Address.IsValid() {
		return fmt.Sprintf("*:%d", f.Port)
	}
	return netip.AddrPortFrom(f.Address, f.Port).String()
}

// WantFrontend is what a frontend should hold.
type WantFrontend struct {
	// Port names the Service port ("namespace/name:port/PROTO").
	Port            string
	Flags           uint32
	AffinityTimeout uint32
	All, Local      []Backend
}

// Desired is what one node's maps should hold according to the API server, computed with the agent's
// own translation (agent.Translate, agent.NodeInfoOf).
type Desired struct {
	Node      string
	Frontends map[maps.ServiceKey]WantFrontend
	Tunnels   map[netip.Prefix]netip.Addr
	// Skipped are the Services the agent cannot serve (translation refused them), with the reason.
	Skipped map[string]string
}

// Desired computes node's desired state; mode is the agent's default external service mode (the
// dump's Config.Mode).
func (c *Cluster) Desired(node string, mode string) (*Desired, error) {
	topo := c.topology(node)
	if topo.Self.Name == "" {
		return nil, fmt.Errorf("node %s: no such Node", node)
	}
	topo.DefaultMode = spec.ExternalServiceMode(mode)
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range c.Slices {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			bySvc[s.Namespace+"/"+name] = append(bySvc[s.Namespace+"/"+name], s)
		}
	}
	d := &Desired{Node: node, Frontends: map[maps.ServiceKey]WantFrontend{}, Tunnels: map[netip.Prefix]netip.Addr{},
		Skipped: map[string]string{}}
	for _, svc := range c.Services {
		key := svc.Namespace + "/" + svc.Name
		st, err := agent.Translate(svc, bySvc[key], &topo)
		if err != nil {
			d.Skipped[key] = err.Error()
			continue
		}
		for _, p := range st.Ports {
			all, local := backendsOf(p.All), backendsOf(p.Local)
			for k, flags := range p.Frontends {
				d.Frontends[k] = WantFrontend{Port: p.Name, Flags: flags, AffinityTimeout: p.AffinityTimeout, All: all, Local: local}
			}
		}
	}
	for name, n := range topo.Nodes {
		if name != node && n.PodCIDR.IsValid() && n.InternalIP.IsValid() {
			d.Tunnels[n.PodCIDR] = n.InternalIP
		}
	}
	return d, nil
}

func backendsOf(vs []maps.BackendValue) []Backend {
	out := make([]Backend, len(vs))
	for i, v := range vs {
		out[i] = BackendOf(v)
	}
	return out
}

// Difference is one way a node's maps differ from the desired state.
type Difference struct {
	Node string `json:"node"`
	// Kind is one of: missing frontend, orphaned frontend, wrong frontend, missing backend, stale
	// backend, missing backend slot, orphaned backend slot, missing tunnel, wrong tunnel peer, orphaned
	// tunnel.
	Kind string `json:"kind"`
	// Object names the entry in a user's terms; Detail says what is wrong with it.
	Object string `json:"object"`
	Detail string `json:"detail,omitempty"`
}

func (d Difference) String() string {
	s := d.Node + ": " + d.Kind + " " + d.Object
	if d.Detail != "" {
		s += ": " + d.Detail
	}
	return s
}

// ErrDrift is returned (wrapped) when verify found differences.
var ErrDrift = errors.New("the datapath differs from the API server")

// Diff lists every difference between the node's dump and its desired state, sorted.
func (c *Cluster) Diff(want *Desired, got *Dump) []Difference {
	var out []Difference
	add := func(kind, object, detail string) {
		out = append(out, Difference{Node: want.Node, Kind: kind, Object: object, Detail: detail})
	}
	gotFE := map[maps.ServiceKey]Frontend{}
	ids := map[uint32]bool{}
	for _, f := range got.Frontends {
		gotFE[f.MapKey()] = f
		ids[f.ServiceID] = true
	}
	tables := map[uint32]bool{}
	for k, w := range want.Frontends {
		f := FrontendOf(k, maps.ServiceValue{})
		name := w.Port + " " + FrontendKind(f) + " " + FrontendAddr(f)
		g, ok := gotFE[k]
		if !ok {
			detail := ""
			if why, skipped := skippedReason(got, w.Port); skipped {
				detail = "the agent skipped it: " + why
			}
			add("missing frontend", name, detail)
			continue
		}
		if g.FlagBits() != w.Flags {
			add("wrong frontend", name, fmt.Sprintf("flags %v, want %v", ServiceFlagNames(g.FlagBits()), ServiceFlagNames(w.Flags)))
		}
		if g.AffinityTimeout != w.AffinityTimeout {
			add("wrong frontend", name, fmt.Sprintf("affinity timeout %ds, want %ds", g.AffinityTimeout, w.AffinityTimeout))
		}
		// The frontends of one Service port share its backend table: compare it once.
		if !tables[g.ServiceID] {
			tables[g.ServiceID] = true
			c.diffTable(add, got, w.Port, g.ServiceID, "all", int(g.Count), w.All)
			c.diffTable(add, got, w.Port, g.ServiceID, "local", int(g.LocalCount), w.Local)
		}
	}
	for k, f := range gotFE {
		if _, ok := want.Frontends[k]; !ok {
			detail := "no Service has this frontend"
			if n := c.PortName(k); n != "" {
				detail = "Service port " + n + " should not have it on this node"
			}
			add("orphaned frontend", FrontendKind(f)+" "+FrontendAddr(f)+"/"+f.Protocol, detail)
		}
	}
	for _, b := range got.Backends {
		if !ids[b.ServiceID] {
			add("orphaned backend slot", fmt.Sprintf("table %d %s slot %d", b.ServiceID, b.Table, b.Slot),
				c.backendName(got.Node, b.Backend)+"; no frontend uses this table")
		}
	}
	gotTun := map[netip.Prefix]netip.Addr{}
	for _, t := range got.Tunnels {
		gotTun[t.PodCIDR] = t.NodeIP
	}
	for p, ip := range want.Tunnels {
		g, ok := gotTun[p]
		switch {
		case !ok:
			add("missing tunnel", p.String(), "to "+c.nodeAddr(ip))
		case g != ip:
			add("wrong tunnel peer", p.String(), fmt.Sprintf("to %s, want %s", c.nodeAddr(g), c.nodeAddr(ip)))
		}
	}
	for p, ip := range gotTun {
		if _, ok := want.Tunnels[p]; !ok {
			add("orphaned tunnel", p.String(), "to "+c.nodeAddr(ip)+"; no Node has this pod CIDR")
		}
	}
	slices.SortFunc(out, func(a, b Difference) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Object, b.Object), strings.Compare(a.Detail, b.Detail))
	})
	return out
}

// skippedReason finds the agent's reason for skipping the Service of port ("ns/name:port/PROTO").
func skippedReason(d *Dump, port string) (string, bool) {
	if d.Status == nil {
		return "", false
	}
	svc, _, _ := strings.Cut(port, ":")
	for _, s := range d.Status.Skipped {
		if rest, ok := strings.CutPrefix(s, svc+": "); ok {
			return rest, true
		}
	}
	return "", false
}

// diffTable compares the count slots of table of service id with want (as multisets: the datapath
// picks by slot, the order does not change which backends serve).
func (c *Cluster) diffTable(add func(kind, object, detail string), got *Dump, name string, id uint32, table string, count int, want []Backend) {
	slots := got.SlotsOf(id, table)
	have := map[Backend]int{}
	present := map[uint16]bool{}
	for _, s := range slots {
		present[s.Slot] = true
		if int(s.Slot) < count {
			have[s.Backend]++
		}
	}
	for i := range count {
		if !present[uint16(i)] {
			add("missing backend slot", name, fmt.Sprintf("%s table slot %d of %d is empty", table, i, count))
		}
	}
	for _, s := range slots {
		if int(s.Slot) >= count {
			add("orphaned backend slot", name, fmt.Sprintf("%s table slot %d beyond the count %d: %s", table, s.Slot, count, c.backendName(got.Node, s.Backend)))
		}
	}
	for _, b := range want {
		if have[b] > 0 {
			have[b]--
			continue
		}
		add("missing backend", name, fmt.Sprintf("%s (%s table)", c.backendName(got.Node, b), table))
	}
	for b, n := range have {
		for range n {
			add("stale backend", name, fmt.Sprintf("%s (%s table)", c.backendName(got.Node, b), table))
		}
	}
}

// backendName prints a backend as "10.244.1.5:8080 (node demo-worker)"; self is the node whose map
// holds it (a local backend runs there).
func (c *Cluster) backendName(self string, b Backend) string {
	return NamedBackend{Address: b.AddrPort(), Node: c.backendNode(self, b)}.String()
}

// backendNode is the name of the node a backend runs on: the remote node it names, the node that has a
// host-network backend's address, else self.
func (c *Cluster) backendNode(self string, b Backend) string {
	switch {
	case b.NodeIP.IsValid():
		return c.nodeAddr(b.NodeIP)
	case b.HostNetwork:
		if n := c.NodeName(b.Address); n != "" {
			return n
		}
	}
	return self
}

// nodeAddr prints a node address as its node's name, or the address when no node has it.
func (c *Cluster) nodeAddr(ip netip.Addr) string {
	if n := c.NodeName(ip); n != "" {
		return n
	}
	return ip.String()
}
