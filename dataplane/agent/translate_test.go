package agent

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testTopo() *Topology {
	n := func(name, ip, cidr string) NodeInfo {
		a := netip.MustParseAddr(ip)
		return NodeInfo{Name: name, InternalIP: a, Addrs: []netip.Addr{a}, PodCIDR: netip.MustParsePrefix(cidr)}
	}
	nodes := map[string]NodeInfo{
		"n1": n("n1", "192.168.254.11", "10.244.1.0/24"),
		"n2": n("n2", "192.168.254.12", "10.244.2.0/24"),
	}
	return &Topology{Self: nodes["n1"], Nodes: nodes, DefaultMode: "tunnel"}
}

func ptr[T any](v T) *T { return &v }

func svcOf(typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: typ, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Ports: ports},
	}
}

func sliceOf(ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps,
	}
}

func ep(addr, node string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)}}
}

func key(addr string, port uint16, proto, scope uint8) maps.ServiceKey {
	a := netip.Addr{}
	if addr != "" {
		a = netip.MustParseAddr(addr)
	}
	return maps.NewServiceKey(a, port, proto, scope)
}

func TestTranslateNodePortClusterRemoteAndLocal(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeNodePort,
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053})
	svc.Spec.ExternalIPs = []string{"192.0.2.7"}
	sl := sliceOf([]discoveryv1.EndpointPort{
		{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)},
		{Name: ptr("dns"), Port: ptr(int32(8053)), Protocol: ptr(corev1.ProtocolUDP)},
	}, ep("10.244.2.5", "n2", true), ep("10.244.1.3", "n1", true), ep("10.244.1.9", "n1", false))
	st, err := Translate(svc, []*discoveryv1.EndpointSlice{sl}, testTopo())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 2 {
		t.Fatalf("ports %d", len(st.Ports))
	}
	http := st.Ports[0]
	if http.Name != "default/web:80/TCP" {
		t.Errorf("name %s", http.Name)
	}
	wantFE := map[maps.ServiceKey]uint32{
		key("10.96.0.10", 80, maps.ProtoTCP, maps.ScopeCluster): 0,
		key("192.0.2.7", 80, maps.ProtoTCP, maps.ScopeExternal): maps.SvcTunnel,
		key("", 30080, maps.ProtoTCP, maps.ScopeExternal):       maps.SvcTunnel,
	}
	if len(http.Frontends) != len(wantFE) {
		t.Fatalf("frontends %v", http.Frontends)
	}
	for k, f := range wantFE {
		if got, ok := http.Frontends[k]; !ok || got != f {
			t.Errorf("frontend %+v: flags %v %v, want %v", k, got, ok, f)
		}
	}
	if len(http.All) != 2 || len(http.Local) != 1 {
		t.Fatalf("backends all=%v local=%v", http.All, http.Local)
	}
	local, remote := http.All[0], http.All[1] // sorted: 10.244.1.3 < 10.244.2.5
	if local.Addr != maps.Addr4(netip.MustParseAddr("10.244.1.3")) || local.Port != 8080 || local.Flags != maps.BackendLocal || local.NodeIP != [4]byte{} {
		t.Errorf("local backend %+v", local)
	}
	if remote.Flags != maps.BackendRemote || remote.NodeIP != maps.Addr4(netip.MustParseAddr("192.168.254.12")) {
		t.Errorf("remote backend %+v", remote)
	}
	if dns := st.Ports[1]; dns.All[0].Port != 8053 || len(dns.Frontends) != 3 {
		t.Errorf("udp port %+v", dns)
	} else if _, ok := dns.Frontends[key("", 30053, maps.ProtoUDP, maps.ScopeExternal)]; !ok {
		t.Errorf("udp nodeport missing: %v", dns.Frontends)
	}
}

func TestTranslatePolicies(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeLoadBalancer, corev1.ServicePort{Name: "", Port: 443, NodePort: 30443})
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svc.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
	svc.Annotations[ModeAnnotation] = "dsr"
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}, {Hostname: "lb.example"}}
	sl := sliceOf([]discoveryv1.EndpointPort{{Port: ptr(int32(8443))}}, ep("192.168.254.12", "n2", true))
	st, err := Translate(svc, []*discoveryv1.EndpointSlice{sl}, testTopo())
	if err != nil {
		t.Fatal(err)
	}
	p := st.Ports[0]
	if p.AffinityTimeout != 60 {
		t.Errorf("affinity %d", p.AffinityTimeout)
	}
	if f := p.Frontends[key("10.96.0.10", 443, maps.ProtoTCP, maps.ScopeCluster)]; f != maps.SvcInternalLocal|maps.SvcAffinity {
		t.Errorf("cluster flags %b", f)
	}
	want := maps.SvcExternalLocal | maps.SvcAffinity | maps.SvcDSR
	for _, k := range []maps.ServiceKey{key("198.51.100.1", 443, maps.ProtoTCP, maps.ScopeExternal), key("", 30443, maps.ProtoTCP, maps.ScopeExternal)} {
		if f, ok := p.Frontends[k]; !ok || f != want {
			t.Errorf("external %+v flags %b", k, f)
		}
	}
	// a host-network backend on another node: a node IP, remote
	if len(p.All) != 1 || p.All[0].Flags != maps.BackendRemote|maps.BackendHostNet || len(p.Local) != 0 {
		t.Errorf("backends %+v local %+v", p.All, p.Local)
	}
}

func TestTranslateNoEndpointsAndHeadless(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80})
	st, err := Translate(svc, nil, testTopo())
	if err != nil || len(st.Ports) != 1 || len(st.Ports[0].All) != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	for _, f := range st.Ports[0].Frontends {
		if f&maps.SvcReject == 0 {
			t.Errorf("no-endpoint frontend without reject: %b", f)
		}
	}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	if st, err := Translate(svc, nil, testTopo()); err != nil || len(st.Ports) != 0 {
		t.Errorf("headless: %+v %v", st, err)
	}
}

func TestTranslateUnsupported(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolSCTP})
	if _, err := Translate(svc, nil, testTopo()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("sctp: %v", err)
	}
	svc = svcOf(corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80})
	svc.Annotations[ModeAnnotation] = "teleport"
	if _, err := Translate(svc, nil, testTopo()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("bad annotation: %v", err)
	}
}

// epc is an endpoint with explicit conditions (ready, serving, terminating), as the EndpointSlice
// controller writes them for a pod that is being deleted.
func epc(addr, node string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr(node), Conditions: discoveryv1.EndpointConditions{
		Ready: ptr(ready), Serving: ptr(serving), Terminating: ptr(terminating)}}
}

func addrsOf(l []maps.BackendValue) []string {
	var s []string
	for _, b := range l {
		s = append(s, netip.AddrFrom4(b.Addr).String())
	}
	return s
}

func sameAddrs(got []maps.BackendValue, want ...string) bool {
	g := addrsOf(got)
	if len(g) != len(want) {
		return false
	}
	for i := range g {
		if g[i] != want[i] {
			return false
		}
	}
	return true
}

// A Deployment of one replica rolls: the old pod terminates (still serving) before the new one is
// Ready. kube-proxy keeps sending to the terminating pod; a Service without backends would refuse.
func TestTranslateTerminatingEndpointsServeWhenNoneReady(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080})
	ports := []discoveryv1.EndpointPort{{Port: ptr(int32(8080))}}
	cases := []struct {
		name       string
		eps        []discoveryv1.Endpoint
		all, local []string
	}{
		{"rollout: old terminating, new not ready", []discoveryv1.Endpoint{
			epc("10.244.2.5", "n2", false, true, true), epc("10.244.1.7", "n1", false, false, false)},
			[]string{"10.244.2.5"}, nil},
		{"ready endpoints win over terminating ones", []discoveryv1.Endpoint{
			epc("10.244.2.5", "n2", false, true, true), epc("10.244.1.7", "n1", true, true, false)},
			[]string{"10.244.1.7"}, []string{"10.244.1.7"}},
		{"terminating and not serving is never used", []discoveryv1.Endpoint{
			epc("10.244.2.5", "n2", false, false, true)}, nil, nil},
		{"local table falls back to this node's serving terminating endpoints", []discoveryv1.Endpoint{
			epc("10.244.2.5", "n2", true, true, false), epc("10.244.1.3", "n1", false, true, true)},
			[]string{"10.244.2.5"}, []string{"10.244.1.3"}},
		{"local ready endpoints win over local terminating ones", []discoveryv1.Endpoint{
			epc("10.244.1.3", "n1", false, true, true), epc("10.244.1.4", "n1", true, true, false)},
			[]string{"10.244.1.4"}, []string{"10.244.1.4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := Translate(svc, []*discoveryv1.EndpointSlice{sliceOf(ports, c.eps...)}, testTopo())
			if err != nil {
				t.Fatal(err)
			}
			p := st.Ports[0]
			if !sameAddrs(p.All, c.all...) || !sameAddrs(p.Local, c.local...) {
				t.Errorf("all %v local %v, want all %v local %v", addrsOf(p.All), addrsOf(p.Local), c.all, c.local)
			}
			rejects := p.Frontends[key("", 30080, maps.ProtoTCP, maps.ScopeExternal)]&maps.SvcReject != 0
			if rejects != (len(c.all) == 0) {
				t.Errorf("reject flag %v with backends %v", rejects, addrsOf(p.All))
			}
		})
	}
}

// trafficDistribution PreferClose: the EndpointSlice controller hints each endpoint for a zone, and
// kube-proxy sends cluster traffic to the endpoints of its own zone, to all when none is hinted for it.
func TestTranslatePreferCloseUsesThisZonesEndpoints(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80})
	svc.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferClose)
	ports := []discoveryv1.EndpointPort{{Port: ptr(int32(8080))}}
	zoned := func(addr, node, zone string) discoveryv1.Endpoint {
		e := ep(addr, node, true)
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
		return e
	}
	topo := testTopo()
	topo.Zone = "zone-a"
	sl := sliceOf(ports, zoned("10.244.1.3", "n1", "zone-b"), zoned("10.244.2.5", "n2", "zone-a"), zoned("10.244.3.9", "n3", "zone-b"))
	st, err := Translate(svc, []*discoveryv1.EndpointSlice{sl}, topo)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Ports[0]; !sameAddrs(p.All, "10.244.2.5") || !sameAddrs(p.Local, "10.244.1.3") {
		t.Errorf("zone-a: all %v local %v, want all [10.244.2.5] and the node's own in local", addrsOf(p.All), addrsOf(p.Local))
	}
	topo.Zone = "zone-c" // no endpoint hinted for this zone: all of them
	st, _ = Translate(svc, []*discoveryv1.EndpointSlice{sl}, topo)
	if p := st.Ports[0]; len(p.All) != 3 {
		t.Errorf("zone-c: all %v, want every endpoint", addrsOf(p.All))
	}
	topo.Zone = "zone-a" // one Ready endpoint without a hint: hints are ignored
	sl.Endpoints = append(sl.Endpoints, ep("10.244.2.8", "n2", true))
	st, _ = Translate(svc, []*discoveryv1.EndpointSlice{sl}, topo)
	if p := st.Ports[0]; len(p.All) != 4 {
		t.Errorf("partial hints: all %v, want every endpoint", addrsOf(p.All))
	}
	// PreferSameNode: node hints name this node
	sl = sliceOf(ports, ep("10.244.1.3", "n1", true), ep("10.244.2.5", "n2", true))
	sl.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForNodes: []discoveryv1.ForNode{{Name: "n1"}}}
	sl.Endpoints[1].Hints = &discoveryv1.EndpointHints{ForNodes: []discoveryv1.ForNode{{Name: "n2"}}}
	st, _ = Translate(svc, []*discoveryv1.EndpointSlice{sl}, topo)
	if p := st.Ports[0]; !sameAddrs(p.All, "10.244.1.3") {
		t.Errorf("node hints: all %v, want this node's endpoint", addrsOf(p.All))
	}
}

// A LoadBalancer with externalTrafficPolicy Local gets a health check port; its answer counts this
// node's Ready endpoint addresses (terminating ones do not count: the load balancer should drain).
func TestTranslateHealthCheckNodePortCountsLocalReadyEndpoints(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeLoadBalancer, corev1.ServicePort{Name: "a", Port: 80, NodePort: 30080}, corev1.ServicePort{Name: "b", Port: 81, NodePort: 30081})
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svc.Spec.HealthCheckNodePort = 32000
	sl := sliceOf([]discoveryv1.EndpointPort{{Name: ptr("a"), Port: ptr(int32(8080))}, {Name: ptr("b"), Port: ptr(int32(8081))}},
		ep("10.244.1.3", "n1", true), ep("10.244.1.4", "n1", true), epc("10.244.1.5", "n1", false, true, true), ep("10.244.2.5", "n2", true))
	st, err := Translate(svc, []*discoveryv1.EndpointSlice{sl}, testTopo())
	if err != nil {
		t.Fatal(err)
	}
	if st.HealthCheckNodePort != 32000 || st.LocalReady != 2 {
		t.Errorf("health check port %d local ready %d, want 32000 and 2", st.HealthCheckNodePort, st.LocalReady)
	}
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	if st, _ := Translate(svc, []*discoveryv1.EndpointSlice{sl}, testTopo()); st.HealthCheckNodePort != 0 {
		t.Errorf("Cluster policy: health check port %d, want none", st.HealthCheckNodePort)
	}
}

// A load balancer with ipMode Proxy sends to the nodes from its own address: kube-proxy does not take its
// ingress IP as a frontend, so node traffic to that address still reaches the load balancer.
func TestTranslateIngressIPModeProxyIsNotAFrontend(t *testing.T) {
	svc := svcOf(corev1.ServiceTypeLoadBalancer, corev1.ServicePort{Port: 443, NodePort: 30443})
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
		{IP: "198.51.100.1", IPMode: ptr(corev1.LoadBalancerIPModeProxy)},
		{IP: "198.51.100.2", IPMode: ptr(corev1.LoadBalancerIPModeVIP)},
	}
	st, err := Translate(svc, nil, testTopo())
	if err != nil {
		t.Fatal(err)
	}
	p := st.Ports[0]
	if _, ok := p.Frontends[key("198.51.100.1", 443, maps.ProtoTCP, maps.ScopeExternal)]; ok {
		t.Error("ipMode Proxy ingress IP is a frontend")
	}
	if _, ok := p.Frontends[key("198.51.100.2", 443, maps.ProtoTCP, maps.ScopeExternal)]; !ok {
		t.Error("ipMode VIP ingress IP is not a frontend")
	}
}
