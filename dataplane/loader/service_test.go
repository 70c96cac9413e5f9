package loader_test

import (
	"net/netip"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// TestRootSetService: scaling 1 -> 3 -> 0 backends leaves exactly the slots
// the counts name.
func TestRootSetService(t *testing.T) {
	testutil.RequireRoot(t)
	m := loadertest.Load(t, loader.Options{}).Maps
	keys := []maps.ServiceKey{
		maps.NewServiceKey(netip.MustParseAddr("10.96.0.10"), 80, maps.ProtoTCP, maps.ScopeCluster),
		maps.NewServiceKey(netip.Addr{}, 30080, maps.ProtoTCP, maps.ScopeExternal),
	}
	flags := []uint32{0, maps.SvcExternalLocal}
	be := func(last byte, local bool) maps.BackendValue {
		v := maps.BackendValue{Addr: [4]byte{10, 244, 1, last}, Port: 8080, Flags: maps.BackendRemote}
		if local {
			v.Flags = maps.BackendLocal
		}
		return v
	}
	slots := func() (all, local int) {
		must(t, m.IterateBackends(func(k maps.BackendKey, _ maps.BackendValue) bool {
			if k.Table == maps.TableAll {
				all++
			} else {
				local++
			}
			return true
		}))
		return
	}
	var pa, pl uint16
	var err error
	for _, step := range [][]maps.BackendValue{
		{be(1, true)},
		{be(1, true), be(2, false), be(3, true)},
		{},
	} {
		pa, pl, err = m.SetService(5, keys, flags, maps.ServiceValue{}, step, pa, pl)
		must(t, err)
		a, l := slots()
		if a != int(pa) || l != int(pl) {
			t.Fatalf("slots %d/%d, counts %d/%d", a, l, pa, pl)
		}
		v, err := m.LookupService(keys[1])
		must(t, err)
		if v.Count != pa || v.LocalCount != pl || v.Flags != maps.SvcExternalLocal || v.ID != 5 {
			t.Fatalf("nodeport value %+v", v)
		}
	}
	must(t, m.DeleteServiceFrontends(5, keys, pa, pl))
	n := 0
	must(t, m.IterateServices(func(maps.ServiceKey, maps.ServiceValue) bool { n++; return true }))
	if n != 0 {
		t.Fatalf("%d frontends left", n)
	}
}
