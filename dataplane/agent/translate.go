package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/provision/spec"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ModeAnnotation selects a Service's external service mode: tunnel or dsr.
const ModeAnnotation = "kubedirect.io/external-service-mode"

// ErrUnsupported marks a Service the dataplane cannot serve (reported with an Event, then skipped).
var ErrUnsupported = errors.New("unsupported service")

// NodeInfo is what translation needs to know about a node.
type NodeInfo struct {
	Name       string
	InternalIP netip.Addr
	// Addrs are all of the node's IPv4 addresses (InternalIP first), where its NodePorts answer.
	Addrs   []netip.Addr
	PodCIDR netip.Prefix
}

// Topology is the cluster as translation sees it: this node and every node by name.
type Topology struct {
	Self  NodeInfo
	Nodes map[string]NodeInfo
	// DefaultMode is the external service mode of Services without the annotation.
	DefaultMode spec.ExternalServiceMode
	// Zone is this node's topology.kubernetes.io/zone label ("" without one): endpoints hinted for it
	// are preferred (trafficDistribution PreferClose, topology-aware routing).
	Zone string
}

// nodeOf returns the node an endpoint address runs on: by nodeName, else by pod CIDR, else by node address.
func (t *Topology) nodeOf(nodeName string, addr netip.Addr) (NodeInfo, bool) {
	if n, ok := t.Nodes[nodeName]; ok && nodeName != "" {
		return n, true
	}
	for _, n := range t.Nodes {
		if n.PodCIDR.IsValid() && n.PodCIDR.Contains(addr) {
			return n, true
		}
	}
	for _, n := range t.Nodes {
		for _, a := range n.Addrs {
			if a == addr {
				return n, true
			}
		}
	}
	return NodeInfo{}, false
}

// PortState is the dataplane state of one Service port: its frontends (sharing one backend table) and
// the backends, all of them and this node's.
type PortState struct {
	// Name identifies the port: "namespace/name:port/PROTO".
	Name string
	// Frontends maps each frontend key to its service flags.
	Frontends map[maps.ServiceKey]uint32
	// AffinityTimeout is the ClientIP affinity timeout in seconds (0 without affinity).
	AffinityTimeout uint32
	// All and Local are the backend slots of TableAll and TableLocal, in slot order.
	All, Local []maps.BackendValue
}

// ServiceState is the dataplane state of one Service.
type ServiceState struct {
	Ports []PortState
	// HealthCheckNodePort is the port where this node answers load balancers' health checks for the
	// Service (externalTrafficPolicy Local LoadBalancers only; 0 otherwise).
	HealthCheckNodePort uint16
	// LocalReady counts the distinct addresses of this node's Ready endpoints (what that health check
	// reports: terminating endpoints still serve, but the node should be drained).
	LocalReady int
}

// Backends counts the backend slots of all ports (TableAll).
func (s ServiceState) Backends() int {
	n := 0
	for _, p := range s.Ports {
		n += len(p.All)
	}
	return n
}

func protoOf(p corev1.Protocol) (uint8, error) {
	switch p {
	case corev1.ProtocolTCP, "":
		return maps.ProtoTCP, nil
	case corev1.ProtocolUDP:
		return maps.ProtoUDP, nil
	}
	return 0, fmt.Errorf("%w: protocol %s", ErrUnsupported, p)
}

func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// Translate computes the dataplane state of svc on the node topo.Self from its EndpointSlices.
// It is pure: the same inputs always give the same state. An error wrapping ErrUnsupported means the
// Service cannot be served at all.
func Translate(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, topo *Topology) (ServiceState, error) {
	var st ServiceState
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return st, nil // DNS only
	}
	mode := topo.DefaultMode
	if a, ok := svc.Annotations[ModeAnnotation]; ok {
		if mode = spec.ExternalServiceMode(a); !mode.Valid() {
			return st, fmt.Errorf("%w: annotation %s=%q (want tunnel or dsr)", ErrUnsupported, ModeAnnotation, a)
		}
	}
	var modeFlag uint32 = maps.SvcTunnel
	if mode == spec.ModeDSR {
		modeFlag = maps.SvcDSR
	}
	var affinity uint32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = uint32(corev1.DefaultClientIPServiceAffinitySeconds)
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = uint32(*c.ClientIP.TimeoutSeconds)
		}
	}
	var clusterIPs []netip.Addr
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, ok := parseAddr(s); ok && !containsAddr(clusterIPs, a) {
				clusterIPs = append(clusterIPs, a)
			}
		}
	}
	var extIPs []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		if a, ok := parseAddr(s); ok && !containsAddr(extIPs, a) {
			extIPs = append(extIPs, a)
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IPMode != nil && *in.IPMode == corev1.LoadBalancerIPModeProxy {
				continue // the load balancer proxies to the nodes: its address is not ours to take (kube-proxy skips it too)
			}
			if a, ok := parseAddr(in.IP); ok && !containsAddr(extIPs, a) {
				extIPs = append(extIPs, a)
			}
		}
	}
	if len(clusterIPs) == 0 && len(extIPs) == 0 && !hasNodePorts(svc) {
		return st, nil // headless
	}
	extLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
		(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer)
	intLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal

	if extLocal && svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.HealthCheckNodePort != 0 {
		st.HealthCheckNodePort = uint16(svc.Spec.HealthCheckNodePort)
	}
	st.LocalReady = localReady(slices, topo)

	for _, sp := range svc.Spec.Ports {
		proto, err := protoOf(sp.Protocol)
		if err != nil {
			return ServiceState{}, err
		}
		ps := PortState{
			Name:            svc.Namespace + "/" + svc.Name + ":" + strconv.Itoa(int(sp.Port)) + "/" + string(orTCP(sp.Protocol)),
			Frontends:       map[maps.ServiceKey]uint32{},
			AffinityTimeout: affinity,
		}
		ps.All, ps.Local = backendsFor(sp, slices, topo)
		var common uint32
		if affinity != 0 {
			common |= maps.SvcAffinity
		}
		if len(ps.All) == 0 {
			common |= maps.SvcReject
		}
		cluster := common
		if intLocal {
			cluster |= maps.SvcInternalLocal
		}
		external := common | modeFlag
		if extLocal {
			external |= maps.SvcExternalLocal
		}
		port := uint16(sp.Port)
		for _, a := range clusterIPs {
			ps.Frontends[maps.NewServiceKey(a, port, proto, maps.ScopeCluster)] = cluster
		}
		for _, a := range extIPs {
			ps.Frontends[maps.NewServiceKey(a, port, proto, maps.ScopeExternal)] = external
		}
		if sp.NodePort != 0 && (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) {
			ps.Frontends[maps.NewServiceKey(netip.Addr{}, uint16(sp.NodePort), proto, maps.ScopeExternal)] = external
		}
		st.Ports = append(st.Ports, ps)
	}
	return st, nil
}

func orTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func hasNodePorts(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			return true
		}
	}
	return false
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// endpoint is one endpoint address of a Service port with its conditions and topology hints.
type endpoint struct {
	b                           maps.BackendValue
	ready, serving, terminating bool
	zones, nodes                []string
}

// conditionsOf reads an endpoint's conditions as the EndpointSlice API defines them: Ready unset means
// ready, Serving unset defers to Ready, Terminating unset means not terminating.
func conditionsOf(c discoveryv1.EndpointConditions) (ready, serving, terminating bool) {
	ready = c.Ready == nil || *c.Ready
	serving = ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	return ready, serving, c.Terminating != nil && *c.Terminating
}

// localReady counts the distinct addresses of this node's Ready endpoints in the slices.
func localReady(slices []*discoveryv1.EndpointSlice, topo *Topology) int {
	seen := map[netip.Addr]bool{}
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ready, _, _ := conditionsOf(ep.Conditions); !ready {
				continue
			}
			node := ""
			if ep.NodeName != nil {
				node = *ep.NodeName
			}
			for _, s := range ep.Addresses {
				if a, ok := parseAddr(s); ok {
					if n, known := topo.nodeOf(node, a); known && n.Name == topo.Self.Name {
						seen[a] = true
					}
				}
			}
		}
	}
	return len(seen)
}

// backendsFor resolves the endpoints of one service port into the backend slots of both tables, sorted
// by address so that the slot order is stable. It picks endpoints as kube-proxy's CategorizeEndpoints
// does: all holds the Ready endpoints (only those hinted for this node, else for its zone, when every
// Ready endpoint carries such hints and one names this node or zone), or, when no endpoint is Ready
// anywhere, the serving terminating ones, so that a rollout of a single replica or a drain lets
// connections finish instead of being refused. local holds this node's Ready endpoints, or, when it has
// none, its serving terminating ones.
func backendsFor(sp corev1.ServicePort, slices []*discoveryv1.EndpointSlice, topo *Topology) (all, local []maps.BackendValue) {
	var eps []endpoint
	seen := map[netip.AddrPort]bool{}
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port, ok := slicePort(sl, sp)
		if !ok {
			continue
		}
		for _, ep := range sl.Endpoints {
			e := endpoint{}
			e.ready, e.serving, e.terminating = conditionsOf(ep.Conditions)
			if !e.ready && !(e.serving && e.terminating) {
				continue // never used
			}
			if h := ep.Hints; h != nil {
				for _, z := range h.ForZones {
					e.zones = append(e.zones, z.Name)
				}
				for _, n := range h.ForNodes {
					e.nodes = append(e.nodes, n.Name)
				}
			}
			node := ""
			if ep.NodeName != nil {
				node = *ep.NodeName
			}
			for _, s := range ep.Addresses {
				a, ok := parseAddr(s)
				if !ok || seen[netip.AddrPortFrom(a, port)] {
					continue
				}
				seen[netip.AddrPortFrom(a, port)] = true
				e.b = maps.BackendValue{Addr: maps.Addr4(a), Port: port}
				n, known := topo.nodeOf(node, a)
				hostNet := false
				for _, na := range n.Addrs {
					hostNet = hostNet || na == a
				}
				if hostNet {
					e.b.Flags |= maps.BackendHostNet
				}
				switch {
				case known && n.Name == topo.Self.Name:
					e.b.Flags |= maps.BackendLocal
				case known && n.InternalIP.IsValid():
					e.b.Flags |= maps.BackendRemote
					e.b.NodeIP = maps.Addr4(n.InternalIP)
				}
				eps = append(eps, e)
			}
		}
	}

	prefer := topologyFilter(eps, topo)
	pick := func(use func(endpoint) bool) []maps.BackendValue {
		var l []maps.BackendValue
		for _, e := range eps {
			if use(e) {
				l = append(l, e.b)
			}
		}
		return l
	}
	isLocal := func(e endpoint) bool { return e.b.Flags&maps.BackendLocal != 0 }
	all = pick(func(e endpoint) bool { return e.ready && prefer(e) })
	if len(all) == 0 {
		all = pick(func(e endpoint) bool { return e.serving && e.terminating })
	}
	local = pick(func(e endpoint) bool { return isLocal(e) && e.ready })
	if len(local) == 0 {
		local = pick(func(e endpoint) bool { return isLocal(e) && e.serving && e.terminating })
	}
	less := func(l []maps.BackendValue) func(i, j int) bool {
		return func(i, j int) bool {
			ai, aj := netip.AddrFrom4(l[i].Addr), netip.AddrFrom4(l[j].Addr)
			if ai != aj {
				return ai.Less(aj)
			}
			return l[i].Port < l[j].Port
		}
	}
	sort.Slice(all, less(all))
	sort.Slice(local, less(local))
	return all, local
}

// topologyFilter returns which Ready endpoints cluster traffic from this node may use, as kube-proxy's
// topology modes decide: when every Ready endpoint has node hints and one names this node, those for
// this node; else when every Ready endpoint has zone hints and one names this node's zone, those for
// the zone; else all of them.
func topologyFilter(eps []endpoint, topo *Topology) func(endpoint) bool {
	anyReady, allNodes, allZones, forNode, forZone := false, true, true, false, false
	for _, e := range eps {
		if !e.ready {
			continue
		}
		anyReady = true
		allNodes = allNodes && len(e.nodes) > 0
		allZones = allZones && len(e.zones) > 0
		forNode = forNode || slices.Contains(e.nodes, topo.Self.Name)
		forZone = forZone || (topo.Zone != "" && slices.Contains(e.zones, topo.Zone))
	}
	switch {
	case anyReady && allNodes && forNode:
		return func(e endpoint) bool { return slices.Contains(e.nodes, topo.Self.Name) }
	case anyReady && allZones && forZone:
		return func(e endpoint) bool { return slices.Contains(e.zones, topo.Zone) }
	}
	return func(endpoint) bool { return true }
}

// slicePort finds the slice's port for a service port (by name, as the EndpointSlice controller names them).
func slicePort(sl *discoveryv1.EndpointSlice, sp corev1.ServicePort) (uint16, bool) {
	for _, p := range sl.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name == sp.Name && proto == orTCP(sp.Protocol) && p.Port != nil {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}
