package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
)

// bloat adds what the API server's objects carry and the agent never reads.
func bloat(m *metav1.ObjectMeta) {
	m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
		FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:ports":{}}}`)}}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = `{"apiVersion":"v1","kind":"Service"}`
	m.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: m.Name, UID: "u"}}
	m.Finalizers = []string{"example.com/f"}
}

func bloatedService(svc *corev1.Service) *corev1.Service {
	svc = svc.DeepCopy()
	bloat(&svc.ObjectMeta)
	svc.Labels = map[string]string{"app": "x"}
	svc.Spec.Selector = map[string]string{"app": "x"}
	svc.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "R"}}
	return svc
}

func bloatedSlice(sl *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	sl = sl.DeepCopy()
	bloat(&sl.ObjectMeta)
	if sl.Labels == nil {
		sl.Labels = map[string]string{}
	}
	sl.Labels["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io"
	for i := range sl.Endpoints {
		e := &sl.Endpoints[i]
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: sl.Namespace, Name: "pod", UID: "u", ResourceVersion: "7"}
		e.Hostname = ptr("pod")
		e.DeprecatedTopology = map[string]string{"kubernetes.io/hostname": "n1"}
		e.Zone = ptr("z9")
	}
	return sl
}

func bloatedNode(name, ip, cidr, zone string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		corev1.LabelTopologyZone: zone, "kubernetes.io/hostname": name}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}, ProviderID: "aws:///i-1",
			Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name},
				{Type: corev1.NodeExternalIP, Address: "203.0.113.9"}, {Type: corev1.NodeInternalIP, Address: ip}},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10.1"}, SizeBytes: 1 << 20}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}}
	bloat(&n.ObjectMeta)
	return n
}

// The agent's caches hold what Translate and the node setup read, not the rest of the API server's
// objects: at 10,000 Services the managedFields, annotations and targetRefs were most of the agent's
// anonymous memory.
func TestInformerCachesHoldOnlyWhatTheAgentReads(t *testing.T) {
	svc := bloatedService(testService("s1", addrPlus([4]byte{10, 96, 0, 0}, 1)))
	sl := bloatedSlice(testSlice("s1", [4]byte{10, 244, 1, 0}, 0, 3))
	node := bloatedNode("n1", "172.18.0.3", "10.244.1.0/24", "z1")
	kc := fake.NewClientset(svc, sl, node)
	svcs, nodes := newInformerFactories(kc)
	svcLister, sliceInf := svcs.Core().V1().Services().Lister(), svcs.Discovery().V1().EndpointSlices().Informer()
	nodeLister := nodes.Core().V1().Nodes().Lister()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, f := range []interface {
		Start(<-chan struct{})
		WaitForCacheSync(<-chan struct{}) map[reflect.Type]bool
	}{svcs, nodes} {
		f.Start(ctx.Done()) // cancel stops them
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				t.Fatalf("sync %v", typ)
			}
		}
	}
	gotSvc, err := svcLister.Services(svc.Namespace).Get(svc.Name)
	if err != nil {
		t.Fatal(err)
	}
	gotSlices := sliceInf.GetStore().List()
	gotNodes, err := nodeLister.List(labels.Everything())
	if err != nil || len(gotSlices) != 1 || len(gotNodes) != 1 {
		t.Fatalf("cached %d slices, %d nodes (%v), want 1 each", len(gotSlices), len(gotNodes), err)
	}
	gotSlice, gotNode := gotSlices[0].(*discoveryv1.EndpointSlice), gotNodes[0]
	for what, m := range map[string]metav1.ObjectMeta{"service": gotSvc.ObjectMeta, "slice": gotSlice.ObjectMeta, "node": gotNode.ObjectMeta} {
		if m.ManagedFields != nil || m.OwnerReferences != nil || m.Finalizers != nil || len(m.Annotations) != 0 {
			t.Errorf("cached %s keeps metadata the agent never reads: %+v", what, m)
		}
	}
	if gotSvc.Spec.Selector != nil || gotSvc.Labels != nil || gotSvc.Status.Conditions != nil {
		t.Errorf("cached service keeps its selector, labels or conditions: %+v", gotSvc)
	}
	if e := gotSlice.Endpoints[0]; e.TargetRef != nil || e.Hostname != nil || e.DeprecatedTopology != nil || e.Zone != nil {
		t.Errorf("cached slice endpoint keeps fields the agent never reads: %+v", e)
	}
	if len(gotSlice.Labels) != 1 || gotSlice.Labels[discoveryv1.LabelServiceName] != "s1" {
		t.Errorf("cached slice labels %v, want only the service name", gotSlice.Labels)
	}
	if gotNode.Status.Images != nil || gotNode.Status.Conditions != nil || gotNode.Spec.Taints != nil || len(gotNode.Labels) != 1 {
		t.Errorf("cached node keeps images, conditions, taints or labels the agent never reads: %+v", gotNode)
	}
}

// Translate and NodeInfoOf give the same result on the stripped objects the caches hold as on the API
// server's: stripObject keeps every field they read.
func TestStrippedObjectsTranslateTheSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 2000 {
		b := make([]byte, 64)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f := &fuzzBytes{b: b}
		svc := bloatedService(fuzzService(f, run%fuzzServices))
		if f.bit() {
			svc.Annotations[ModeAnnotation] = []string{"tunnel", "dsr", "bogus"}[f.pick(3)]
		}
		var full, stripped []*discoveryv1.EndpointSlice
		for j := range f.pick(3) {
			sl := bloatedSlice(fuzzSlice(f, run%fuzzServices, j))
			full = append(full, sl)
			stripped = append(stripped, mustStrip(t, sl).(*discoveryv1.EndpointSlice))
		}
		want, wantErr := Translate(svc, full, &fuzzTopo)
		got, gotErr := Translate(mustStrip(t, svc).(*corev1.Service), stripped, &fuzzTopo)
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("run %d: stripped objects translate to %+v (%v), the API server's to %+v (%v)", run, got, gotErr, want, wantErr)
		}
	}
	n := bloatedNode("n1", "172.18.0.3", "10.244.1.0/24", "z1")
	stripped := mustStrip(t, n).(*corev1.Node)
	if got, want := NodeInfoOf(stripped), NodeInfoOf(n); !reflect.DeepEqual(got, want) {
		t.Errorf("stripped node: %+v, the API server's: %+v", got, want)
	}
	if stripped.Labels[corev1.LabelTopologyZone] != "z1" || stripped.Name != n.Name {
		t.Errorf("stripped node lost its name or zone: %+v", stripped.ObjectMeta)
	}
}

// TestStrippedSliceKeepsNodeHints: a Service with trafficDistribution PreferSameNode gets node hints
// (hints.forNodes) on its endpoints, and this node's cluster traffic uses only the endpoints hinted
// for it; the stripped cache must keep those hints, or every node would spread over all endpoints.
func TestStrippedSliceKeepsNodeHints(t *testing.T) {
	svc := testService("web", netip.MustParseAddr("10.96.0.10"))
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}}, AddressType: discoveryv1.AddressTypeIPv4}
	for _, p := range svc.Spec.Ports {
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: &p.Name, Port: ptr(int32(8080)), Protocol: &p.Protocol})
	}
	for i, node := range []string{"n0", "n1"} {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.%d.5", i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}, NodeName: ptr(node),
			Hints: &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z0"}}, ForNodes: []discoveryv1.ForNode{{Name: node}}}})
	}
	want, err := Translate(svc, []*discoveryv1.EndpointSlice{sl}, &fuzzTopo)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Ports) == 0 || len(want.Ports[0].All) != 1 {
		t.Fatalf("the API server's objects translate to %+v: want one port with this node's endpoint only (the test proves nothing)", want)
	}
	got, err := Translate(svc, []*discoveryv1.EndpointSlice{mustStrip(t, sl).(*discoveryv1.EndpointSlice)}, &fuzzTopo)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("stripped slice translates to %+v (%v), the API server's to %+v", got, err, want)
	}
}

func mustStrip(t *testing.T, obj any) any {
	t.Helper()
	out, err := stripObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
