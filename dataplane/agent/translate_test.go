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
