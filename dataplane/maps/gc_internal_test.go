package maps

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/internal/testutil"
)

// TestRootConntrackGCKeepsFlowCreatedDuringScan: the datapath can create a
// new flow under a key the GC found expired before the GC deletes it; the GC
// must leave the new flow alone (its next packet would pick a backend again,
// and the reply entry would be lost).
func TestRootConntrackGCKeepsFlowCreatedDuringScan(t *testing.T) {
	testutil.RequireRoot(t)
	ct, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 16, ValueSize: 32, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	now := MonotonicNow()
	reused := ConntrackKey{SrcAddr: [4]byte{1, 1, 1, 1}, SrcPort: 1, Proto: ProtoUDP}
	dead := ConntrackKey{SrcAddr: [4]byte{2, 2, 2, 2}, SrcPort: 2, Proto: ProtoUDP}
	for _, k := range []ConntrackKey{reused, dead} {
		if err := ct.Put(&k, &ConntrackValue{Expires: now - uint64(time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	keys, live, err := expiredConntrack(ct, MonotonicNow())
	if err != nil || len(keys) != 2 || live != 0 {
		t.Fatalf("scan: %d expired, %d live, %v", len(keys), live, err)
	}
	// A new flow under the same key, between the scan and the delete.
	fresh := ConntrackValue{Expires: MonotonicNow() + uint64(time.Minute), NATPort: 8080}
	if err := ct.Put(&reused, &fresh); err != nil {
		t.Fatal(err)
	}
	if n := deleteExpiredConntrack(ct, keys, MonotonicNow()); n != 1 {
		t.Errorf("deleted %d, want 1", n)
	}
	var v ConntrackValue
	if err := ct.Lookup(&reused, &v); err != nil || v != fresh {
		t.Errorf("the new flow's entry: %+v, %v", v, err)
	}
	if err := ct.Lookup(&dead, &v); err == nil {
		t.Errorf("the expired entry survived")
	}
}
