package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"github.com/kubedirect/kubedirect/dataplane/maps"
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
	// DefaultMode is "tunnel" or "dsr", for Services without the annotation.
	DefaultMode string
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
	if m, ok := svc.Annotations[ModeAnnotation]; ok {
		if m != "tunnel" && m != "dsr" {
			return st, fmt.Errorf("%w: annotation %s=%q (want tunnel or dsr)", ErrUnsupported, ModeAnnotation, m)
		}
		mode = m
	}
	var modeFlag uint32 = maps.SvcTunnel
	if mode == "dsr" {
		modeFlag = maps.SvcDSR
	}
	var affinity uint32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = 10800
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

// backendsFor resolves the ready endpoints of one service port into backend slots, sorted by address so
// that the slot order is stable.
func backendsFor(sp corev1.ServicePort, slices []*discoveryv1.EndpointSlice, topo *Topology) (all, local []maps.BackendValue) {
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
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
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
				b := maps.BackendValue{Addr: maps.Addr4(a), Port: port}
				n, known := topo.nodeOf(node, a)
				hostNet := false
				for _, na := range n.Addrs {
					hostNet = hostNet || na == a
				}
				if hostNet {
					b.Flags |= maps.BackendHostNet
				}
				switch {
				case known && n.Name == topo.Self.Name:
					b.Flags |= maps.BackendLocal
				case known && n.InternalIP.IsValid():
					b.Flags |= maps.BackendRemote
					b.NodeIP = maps.Addr4(n.InternalIP)
				}
				all = append(all, b)
				if b.Flags&maps.BackendLocal != 0 {
					local = append(local, b)
				}
			}
		}
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
