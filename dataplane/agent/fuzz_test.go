package agent

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// fuzzBytes hands out the fuzzer's bytes one decision at a time; an exhausted input reads as zeros,
// so every input is a valid (possibly short) sequence of API changes.
type fuzzBytes struct {
	b []byte
	i int
}

func (f *fuzzBytes) next() byte {
	if f.i >= len(f.b) {
		return 0
	}
	f.i++
	return f.b[f.i-1]
}

func (f *fuzzBytes) pick(n int) int { return int(f.next()) % n }
func (f *fuzzBytes) bit() bool      { return f.next()&1 == 1 }
func (f *fuzzBytes) done() bool     { return f.i >= len(f.b) }

// The cluster the fuzzed Services live in: this node and two others.
var fuzzTopo = Topology{
	Self:        fuzzNode("n0", "172.18.0.2", "10.244.0.0/24"),
	DefaultMode: "tunnel",
	Zone:        "z0",
}

func init() {
	fuzzTopo.Nodes = map[string]NodeInfo{}
	for _, n := range []NodeInfo{fuzzTopo.Self, fuzzNode("n1", "172.18.0.3", "10.244.1.0/24"), fuzzNode("n2", "172.18.0.4", "10.244.2.0/24")} {
		fuzzTopo.Nodes[n.Name] = n
	}
}

func fuzzNode(name, ip, cidr string) NodeInfo {
	a := netip.MustParseAddr(ip)
	return NodeInfo{Name: name, InternalIP: a, Addrs: []netip.Addr{a}, PodCIDR: netip.MustParsePrefix(cidr)}
}

const fuzzServices = 4 // Service names s0..s3, each with up to two EndpointSlices

// fuzzService builds a Service the API server could hold (unique ClusterIP, NodePorts and external
// addresses per Service, unique ports within it) with the rest of its fields chosen by the fuzzer,
// invalid values included where the API server lets them through or the agent must refuse them.
func fuzzService(f *fuzzBytes, i int) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "fz", Name: fmt.Sprintf("s%d", i)}}
	s := &svc.Spec
	s.Type = []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}[f.pick(4)]
	switch f.pick(4) {
	case 0:
		s.ClusterIP = corev1.ClusterIPNone
	case 1:
		s.ClusterIP = "not-an-ip"
	default:
		s.ClusterIP = fmt.Sprintf("10.96.0.%d", i+1)
		s.ClusterIPs = []string{s.ClusterIP}
	}
	if f.bit() {
		s.ExternalIPs = []string{fmt.Sprintf("203.0.113.%d", i+1)}
	}
	if s.Type == corev1.ServiceTypeLoadBalancer && f.bit() {
		in := corev1.LoadBalancerIngress{IP: fmt.Sprintf("198.51.100.%d", i+1)}
		if f.bit() {
			in.IPMode = ptr(corev1.LoadBalancerIPModeProxy)
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{in}
	}
	if f.bit() {
		s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.HealthCheckNodePort = int32(32000 + i)
	}
	if f.bit() {
		s.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	}
	if f.bit() {
		s.SessionAffinity = corev1.ServiceAffinityClientIP
		if f.bit() {
			s.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(f.next()))}}
		}
	}
	switch f.pick(8) {
	case 0:
		svc.Annotations = map[string]string{ModeAnnotation: "dsr"}
	case 1:
		svc.Annotations = map[string]string{ModeAnnotation: "bogus"}
	}
	for j := range 1 + f.pick(3) {
		sp := corev1.ServicePort{
			Name:       fmt.Sprintf("p%d", j),
			Port:       int32(80 + j),
			Protocol:   []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP, "", "ICMP"}[f.pick(5)],
			TargetPort: intstr.FromInt32(int32(8080 + f.pick(2))),
		}
		if s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer {
			sp.NodePort = int32(30000 + 10*i + j)
		}
		s.Ports = append(s.Ports, sp)
	}
	return svc
}

// fuzzSlice builds an EndpointSlice of Service i: endpoints on any node (or none, or an address
// nobody owns), every combination of conditions (unset included), zone and node hints and port names that
// match the Service's or not.
func fuzzSlice(f *fuzzBytes, i, j int) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "fz", Name: fmt.Sprintf("s%d-%d", i, j), Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("s%d", i)}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	if f.pick(8) == 0 {
		sl.AddressType = discoveryv1.AddressTypeIPv6
	}
	for k := range f.pick(4) {
		name := fmt.Sprintf("p%d", k)
		if f.pick(4) == 0 {
			name = "other"
		}
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{
			Name:     ptr(name),
			Port:     ptr(int32(8080 + f.pick(2))),
			Protocol: ptr([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[f.pick(3)]),
		})
	}
	tri := func() *bool {
		switch f.pick(3) {
		case 0:
			return nil
		case 1:
			return ptr(false)
		}
		return ptr(true)
	}
	for range f.pick(5) {
		node := f.pick(4) // 3 = no nodeName
		addr := fmt.Sprintf("10.244.%d.%d", node%3, 2+f.pick(6))
		if f.pick(8) == 0 {
			addr = "garbage"
		}
		ep := discoveryv1.Endpoint{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: tri(), Serving: tri(), Terminating: tri()},
		}
		if node < 3 {
			ep.NodeName = ptr(fmt.Sprintf("n%d", node))
		}
		if f.bit() {
			ep.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: fmt.Sprintf("z%d", f.pick(2))}}}
			if f.bit() { // trafficDistribution PreferSameNode
				ep.Hints.ForNodes = []discoveryv1.ForNode{{Name: fmt.Sprintf("n%d", f.pick(3))}}
			}
		}
		sl.Endpoints = append(sl.Endpoints, ep)
	}
	return sl
}

// fuzzCluster is the API server's side of the fuzzed sequence.
type fuzzCluster struct {
	svcs   map[int]*corev1.Service
	slices map[int]map[int]*discoveryv1.EndpointSlice
}

func (c *fuzzCluster) slicesOf(i int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for j := range 2 {
		if s := c.slices[i][j]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// desired is what the agent means to program for Service i: nothing when it is gone or refused.
func (c *fuzzCluster) desired(i int) ServiceState {
	svc := c.svcs[i]
	if svc == nil {
		return ServiceState{}
	}
	st, err := Translate(svc, c.slicesOf(i), &fuzzTopo)
	if err != nil {
		return ServiceState{}
	}
	return st
}

// FuzzProgrammerMatchesModel feeds random sequences of Service and EndpointSlice adds, updates and
// deletes, and agent restarts (adoption of the pinned maps), through Translate and the Programmer as
// the agent does, and checks after every step that the maps hold exactly what Translate asks for all
// Services together: no entry missing, none stale, no backend table shared between ports. Translate
// must never panic, whatever the objects hold.
func FuzzProgrammerMatchesModel(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 1, 1, 0, 0, 3, 1, 0, 1, 2, 5, 2, 1, 1})
	f.Add([]byte{0, 1, 1, 2, 1, 3, 1, 1, 1, 1, 2, 1, 1, 0, 0, 1, 2, 2, 1, 1, 1, 1, 3, 0, 4, 2, 1, 3, 3})
	f.Add([]byte{0, 2, 2, 2, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 2, 1, 2, 4, 1, 2, 0, 2, 2, 2, 1, 1, 1, 1, 4, 4, 2, 2, 5, 3, 0})
	f.Add([]byte{0, 3, 1, 2, 1, 0, 1, 1, 1, 1, 1, 1, 2, 0, 1, 2, 4, 4, 0, 2, 1, 1, 2, 3, 1, 1, 4, 3, 0, 1, 2, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzBytes{b: data}
		m := newMem()
		p := NewProgrammer(m)
		c := &fuzzCluster{svcs: map[int]*corev1.Service{}, slices: map[int]map[int]*discoveryv1.EndpointSlice{}}
		apply := func(i int) {
			// Errors are allowed only where the model also has nothing to program.
			if err := p.Apply(fmt.Sprintf("fz/s%d", i), c.desired(i)); err != nil {
				t.Fatalf("apply fz/s%d: %v", i, err)
			}
		}
		for step := 0; step < 64 && !in.done(); step++ {
			i := in.pick(fuzzServices)
			switch op := in.pick(6); op {
			case 0, 1:
				c.svcs[i] = fuzzService(in, i)
			case 2:
				j := in.pick(2)
				if c.slices[i] == nil {
					c.slices[i] = map[int]*discoveryv1.EndpointSlice{}
				}
				c.slices[i][j] = fuzzSlice(in, i, j)
			case 3:
				delete(c.svcs, i)
			case 4:
				delete(c.slices[i], in.pick(2))
			case 5:
				// The agent restarts: a new Programmer adopts what the pinned maps hold, every Service
				// is synced once, and what nobody claimed goes.
				p = NewProgrammer(m)
				if err := p.Adopt(); err != nil {
					t.Fatalf("adopt: %v", err)
				}
				for k := range fuzzServices {
					apply(k)
				}
				if err := p.FinishAdoption(); err != nil {
					t.Fatalf("finish adoption: %v", err)
				}
			}
			apply(i)
			var want []PortState
			wantSvcs, wantFE, wantBE := 0, 0, 0
			for k := range fuzzServices {
				ports := c.desired(k).Ports
				want = append(want, ports...)
				if len(ports) > 0 {
					wantSvcs++
				}
				for _, d := range ports {
					wantFE += len(d.Frontends)
					wantBE += len(d.All)
				}
			}
			if err := tableHolds(m, want); err != nil {
				t.Fatalf("after step %d: %v", step, err)
			}
			// the status and metrics show these counts
			if s, f, b := p.Counts(); s != wantSvcs || f != wantFE || b != wantBE {
				t.Fatalf("after step %d: counts %d services, %d frontends, %d backends, want %d, %d, %d",
					step, s, f, b, wantSvcs, wantFE, wantBE)
			}
		}
	})
}

// tableHolds reports how the table differs from exactly the given ports: every frontend with its
// counts, flags and affinity, one backend table per port, every slot of both tables, nothing else.
func tableHolds(m *memTable, ports []PortState) error {
	ids := map[uint32]string{}
	nFE, nBE := 0, 0
	for _, ps := range ports {
		id, first := uint32(0), true
		for k := range ps.Frontends {
			v, ok := m.svcs[k]
			if !ok {
				return fmt.Errorf("%s: frontend %+v missing", ps.Name, k)
			}
			want := maps.ServiceValue{ID: v.ID, Count: uint16(len(ps.All)), LocalCount: uint16(len(ps.Local)), Flags: ps.Frontends[k], AffinityTimeout: ps.AffinityTimeout}
			if v != want {
				return fmt.Errorf("%s: frontend %+v holds %+v, want %+v", ps.Name, k, v, want)
			}
			if first {
				id, first = v.ID, false
			} else if v.ID != id {
				return fmt.Errorf("%s: frontends use backend tables %d and %d", ps.Name, id, v.ID)
			}
			nFE++
		}
		if first {
			continue // a port without frontends programs nothing
		}
		if other, ok := ids[id]; ok {
			return fmt.Errorf("%s and %s share backend table %d", ps.Name, other, id)
		}
		ids[id] = ps.Name
		for table, bes := range map[uint8][]maps.BackendValue{maps.TableAll: ps.All, maps.TableLocal: ps.Local} {
			for slot, b := range bes {
				if got, ok := m.bes[maps.BackendKey{ServiceID: id, Slot: uint16(slot), Table: table}]; !ok || got != b {
					return fmt.Errorf("%s: table %d slot %d holds %+v (%v), want %+v", ps.Name, table, slot, got, ok, b)
				}
			}
			nBE += len(bes)
		}
	}
	if len(m.svcs) != nFE || len(m.bes) != nBE {
		return fmt.Errorf("maps hold %d frontends and %d backends, want %d and %d (stale entries)", len(m.svcs), len(m.bes), nFE, nBE)
	}
	return nil
}
