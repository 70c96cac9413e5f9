package agent

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informer caches hold every Service, EndpointSlice and Node of the cluster for the agent's
// lifetime: at 10,000 Services most of an object is what the agent never reads (managedFields,
// last-applied annotations, the endpoints' targetRefs, a Node's images and conditions). stripObject,
// the informers' transform, keeps only what the agent reads; this file is the one place that lists it:
//
//   - every object: name, namespace, UID and resourceVersion (keys, Events' object references);
//   - Service: the kubedirect.io annotations (ModeAnnotation), the whole spec but its selector,
//     status.loadBalancer (Translate);
//   - EndpointSlice: the service-name label (sliceServiceKey), addressType, ports, and of each endpoint
//     its addresses, conditions, nodeName and hints, zone and node (Translate);
//   - Node: the topology zone label (syncServiceOnce), spec.podCIDR(s) and status.addresses (NodeInfoOf).
//
// A field the agent starts to read must be kept here too: TestStrippedObjectsTranslateTheSame checks
// that Translate and NodeInfoOf give the same result on stripped objects.
func stripObject(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return stripService(o), nil
	case *discoveryv1.EndpointSlice:
		return stripSlice(o), nil
	case *corev1.Node:
		return stripNode(o), nil
	}
	return obj, nil // cache.DeletedFinalStateUnknown and others: as they are
}

// keptAnnotationPrefix is the prefix of the Service annotations the agent reads (ModeAnnotation).
const keptAnnotationPrefix = "kubedirect.io/"

// strippedMeta is the object metadata the agent uses, with the labels and annotations given.
func strippedMeta(m *metav1.ObjectMeta, labels, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: labels, Annotations: annotations}
}

func stripService(s *corev1.Service) *corev1.Service {
	var ann map[string]string
	for k, v := range s.Annotations {
		if strings.HasPrefix(k, keptAnnotationPrefix) {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	spec := s.Spec
	spec.Selector = nil
	return &corev1.Service{TypeMeta: s.TypeMeta, ObjectMeta: strippedMeta(&s.ObjectMeta, nil, ann), Spec: spec,
		Status: corev1.ServiceStatus{LoadBalancer: s.Status.LoadBalancer}}
}

// keptLabel returns the one label key of labels, or nil without it.
func keptLabel(labels map[string]string, key string) map[string]string {
	if v, ok := labels[key]; ok {
		return map[string]string{key: v}
	}
	return nil
}

func stripSlice(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	labels := keptLabel(s.Labels, discoveryv1.LabelServiceName)
	eps := make([]discoveryv1.Endpoint, len(s.Endpoints))
	for i, e := range s.Endpoints {
		// Hints whole: zone hints (topology-aware routing) and node hints (PreferSameNode) both steer Translate.
		eps[i] = discoveryv1.Endpoint{Addresses: e.Addresses, Conditions: e.Conditions, NodeName: e.NodeName, Hints: e.Hints}
	}
	return &discoveryv1.EndpointSlice{TypeMeta: s.TypeMeta, ObjectMeta: strippedMeta(&s.ObjectMeta, labels, nil),
		AddressType: s.AddressType, Endpoints: eps, Ports: s.Ports}
}

func stripNode(n *corev1.Node) *corev1.Node {
	return &corev1.Node{TypeMeta: n.TypeMeta, ObjectMeta: strippedMeta(&n.ObjectMeta, keptLabel(n.Labels, corev1.LabelTopologyZone), nil),
		Spec:   corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses}}
}
