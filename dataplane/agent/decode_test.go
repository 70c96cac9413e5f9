package agent

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
)

// BenchmarkDecodeInitialLists measures the client side of the agent's first API lists: 10,000
// Services and their 10,000 EndpointSlices (5 endpoints each, with the managedFields the API server
// adds) decoded from JSON and from protobuf (the agent's client asks for protobuf, cmd/kubedirect agent).
func BenchmarkDecodeInitialLists(b *testing.B) {
	const n = 10000
	svcs, slices := &corev1.ServiceList{}, &discoveryv1.EndpointSliceList{}
	for i := range n {
		name := "filler-" + strconv.Itoa(i)
		svc := testService(name, addrPlus([4]byte{10, 96, 0, 0}, i))
		sl := testSlice(name, [4]byte{10, 244, 0, 0}, 5*i, 5)
		for _, m := range []*metav1.ObjectMeta{&svc.ObjectMeta, &sl.ObjectMeta} {
			m.UID, m.ResourceVersion = types.UID("6b1f9a3e-0000-4000-8000-"+strconv.Itoa(100000000000+i)), strconv.Itoa(1000+i)
			m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubedirect", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:ports":{".":{}}}}`)}}
		}
		svcs.Items = append(svcs.Items, *svc)
		slices.Items = append(slices.Items, *sl)
	}
	for _, c := range []struct {
		name string
		s    runtime.Serializer
	}{
		{"json", json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{})},
		{"protobuf", protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)},
	} {
		codec := scheme.Codecs.CodecForVersions(c.s, c.s, corev1.SchemeGroupVersion, nil)
		sliceCodec := scheme.Codecs.CodecForVersions(c.s, c.s, discoveryv1.SchemeGroupVersion, nil)
		svcData, err := runtime.Encode(codec, svcs)
		must(b, err)
		sliceData, err := runtime.Encode(sliceCodec, slices)
		must(b, err)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var sl corev1.ServiceList
				var el discoveryv1.EndpointSliceList
				_, _, err := c.s.Decode(svcData, nil, &sl)
				must(b, err)
				_, _, err = c.s.Decode(sliceData, nil, &el)
				must(b, err)
				if len(sl.Items) != n || len(el.Items) != n {
					b.Fatalf("decoded %d services, %d slices", len(sl.Items), len(el.Items))
				}
			}
			b.ReportMetric(float64(len(svcData)+len(sliceData))/(1<<20), "MiB/lists")
		})
	}
}
