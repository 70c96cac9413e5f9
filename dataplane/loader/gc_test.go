package loader_test

import (
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// TestRootConntrackGCAndAffinityPurge covers the maintenance helpers the
// agent runs periodically.
func TestRootConntrackGCAndAffinityPurge(t *testing.T) {
	testutil.RequireRoot(t)
	m := loadertest.Load(t, loader.Options{}).Maps
	now := maps.MonotonicNow()
	live := maps.ConntrackKey{SrcAddr: [4]byte{1, 1, 1, 1}, SrcPort: 1, Proto: maps.ProtoTCP}
	dead := maps.ConntrackKey{SrcAddr: [4]byte{2, 2, 2, 2}, SrcPort: 2, Proto: maps.ProtoTCP}
	must(t, m.Conntrack.Put(&live, &maps.ConntrackValue{Expires: now + uint64(time.Minute)}))
	must(t, m.Conntrack.Put(&dead, &maps.ConntrackValue{Expires: now - uint64(time.Second)}))
	n, err := m.ConntrackCount()
	must(t, err)
	if n != 2 {
		t.Fatalf("count %d", n)
	}
	del, left, err := m.ConntrackGC()
	must(t, err)
	if del != 1 || left != 1 {
		t.Fatalf("gc deleted %d, left %d; want 1, 1", del, left)
	}
	for _, id := range []uint32{1, 1, 2} {
		k := maps.AffinityKey{ServiceID: id, Client: [4]byte{byte(id), 0, 0, byte(time.Now().UnixNano())}}
		must(t, m.Affinity.Put(&k, &maps.AffinityValue{LastUsed: now}))
	}
	purged, err := m.PurgeAffinity(1)
	must(t, err)
	if purged < 1 {
		t.Fatalf("purged %d", purged)
	}
	var k maps.AffinityKey
	var v maps.AffinityValue
	it := m.Affinity.Iterate()
	for it.Next(&k, &v) {
		if k.ServiceID == 1 {
			t.Fatalf("service 1 affinity left")
		}
	}
	// Config round trip and iteration helpers.
	must(t, m.SetConfig(maps.Config{VXLANPort: 8472, Mode: maps.ModeDSR}))
	c, err := m.GetConfig()
	must(t, err)
	if c.VXLANPort != 8472 || c.Mode != maps.ModeDSR {
		t.Fatalf("config %+v", c)
	}
}
