package maps_test

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/kubedirect/kubedirect/bpf"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// TestLayoutMatchesBTF compares every Go mirror with the C struct of the
// same name in the compiled object's BTF: total size, number of fields, and
// each field's offset and size. It also logs the sizes (bytes per entry):
//
//	kd_svc_key 8, kd_svc_val 16, kd_backend_key 8, kd_backend_val 12,
//	kd_ct_key 16, kd_ct_val 32, kd_affinity_key 8, kd_affinity_val 24,
//	kd_tunnel_key 8, kd_tunnel_val 8, kd_endpoint_val 20, kd_config 48,
//	kd_metric 16, kd_event 40, kd_sock_key 16, kd_sock_val 16,
//	kd_sock_aff_key 16, kd_frag_key 12, kd_frag_val 24.
func TestLayoutMatchesBTF(t *testing.T) {
	cases := []struct {
		c string
		v any
	}{
		{"kd_svc_key", maps.ServiceKey{}},
		{"kd_svc_val", maps.ServiceValue{}},
		{"kd_backend_key", maps.BackendKey{}},
		{"kd_backend_val", maps.BackendValue{}},
		{"kd_ct_key", maps.ConntrackKey{}},
		{"kd_ct_val", maps.ConntrackValue{}},
		{"kd_affinity_key", maps.AffinityKey{}},
		{"kd_affinity_val", maps.AffinityValue{}},
		{"kd_tunnel_key", maps.TunnelKey{}},
		{"kd_tunnel_val", maps.TunnelValue{}},
		{"kd_endpoint_val", maps.EndpointValue{}},
		{"kd_config", maps.Config{}},
		{"kd_metric", maps.Metric{}},
		{"kd_event", maps.Event{}},
		{"kd_sock_key", maps.SockKey{}},
		{"kd_sock_val", maps.SockValue{}},
		{"kd_sock_aff_key", maps.SockAffinityKey{}},
		{"kd_frag_key", maps.FragKey{}},
		{"kd_frag_val", maps.FragValue{}},
	}
	for _, load := range []struct {
		name string
		fn   func() (*btf.Spec, error)
	}{
		{"container", func() (*btf.Spec, error) { s, err := bpf.LoadContainer(); return typesOf(s, err) }},
		{"netdev", func() (*btf.Spec, error) { s, err := bpf.LoadNetdev(); return typesOf(s, err) }},
		{"overlay", func() (*btf.Spec, error) { s, err := bpf.LoadOverlay(); return typesOf(s, err) }},
		{"sock", func() (*btf.Spec, error) { s, err := bpf.LoadSock(); return typesOf(s, err) }},
		// kd_types.c: kd_event, which no program's BTF has (ring buffer records).
		{"types", func() (*btf.Spec, error) { s, err := bpf.LoadTypes(); return typesOf(s, err) }},
	} {
		types, err := load.fn()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			var st *btf.Struct
			if err := types.TypeByName(tc.c, &st); err != nil {
				if (load.name == "types") != (tc.c == "kd_event") {
					continue // the programs lack kd_event; kd_types.c has nothing else
				}
				t.Errorf("%s: %s: %v", load.name, tc.c, err)
				continue
			}
			rt := reflect.TypeOf(tc.v)
			if got := binary.Size(tc.v); got != int(st.Size) || rt.Size() != uintptr(st.Size) {
				t.Errorf("%s: %s is %d bytes in C, %d (binary) / %d (memory) in Go", load.name, tc.c, st.Size, got, rt.Size())
			}
			if len(st.Members) != rt.NumField() {
				t.Errorf("%s: %s has %d fields in C, %d in Go", load.name, tc.c, len(st.Members), rt.NumField())
				continue
			}
			for i, m := range st.Members {
				f := rt.Field(i)
				sz, err := btf.Sizeof(m.Type)
				if err != nil {
					t.Fatal(err)
				}
				if uint32(f.Offset) != m.Offset.Bytes() || int(f.Type.Size()) != sz {
					t.Errorf("%s: %s.%s at %d size %d, Go %s at %d size %d", load.name, tc.c, m.Name,
						m.Offset.Bytes(), sz, f.Name, f.Offset, f.Type.Size())
				}
			}
			if load.name == "container" || tc.c == "kd_event" {
				t.Logf("%-16s %3d bytes  (Go %s)", tc.c, st.Size, rt.Name())
			}
		}
	}
}

func typesOf(s *ebpf.CollectionSpec, err error) (*btf.Spec, error) {
	if err != nil {
		return nil, err
	}
	return s.Types, nil
}
