package loader_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/bpf"
	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/loader/loadertest"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

func TestRootLoadAdoptRemove(t *testing.T) {
	testutil.RequireRoot(t)
	dir := loadertest.PinDir(t)
	ctx := context.Background()
	d, err := loader.Load(ctx, loader.Options{PinDir: dir, MapSizes: config.MapSizes{Services: 1000, Conntrack: 4096}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(d.Adopted) != 0 {
		t.Fatalf("fresh load adopted %v", d.Adopted)
	}
	k := maps.ServiceKey{Addr: [4]byte{10, 96, 0, 1}, Port: 80, Proto: maps.ProtoTCP}
	if err := d.Maps.UpdateService(k, maps.ServiceValue{ID: 7, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// A restarted agent adopts the pinned maps with their content, even when
	// asked for other sizes.
	d2, err := loader.Load(ctx, loader.Options{PinDir: dir, MapSizes: config.MapSizes{Services: 2000}})
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if len(d2.Adopted) != len(maps.Names) {
		t.Fatalf("adopted %v, want all %d maps", d2.Adopted, len(maps.Names))
	}
	v, err := d2.Maps.LookupService(k)
	if err != nil || v.ID != 7 {
		t.Fatalf("service after reload: %+v %v", v, err)
	}
	info, _ := d2.Maps.Services.Info()
	if info.MaxEntries != 1000 {
		t.Fatalf("adopted services map has %d entries, want 1000", info.MaxEntries)
	}
	if err := d2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("pin dir still there: %v", err)
	}
}

// TestRootIncompatiblePinnedMap: a pinned map with another layout is an
// error unless ReplaceIncompatible is set.
func TestRootIncompatiblePinnedMap(t *testing.T) {
	testutil.RequireRoot(t)
	dir := loadertest.PinDir(t)
	must(t, os.MkdirAll(dir, 0o755))
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "kd_services", Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: 16})
	must(t, err)
	must(t, old.Pin(filepath.Join(dir, bpf.ContainerMapKdServices)))
	old.Close()
	// A map an older version pinned and this one no longer declares (kd_sock_revnat became kd_sock_nat).
	stale, err := ebpf.NewMap(&ebpf.MapSpec{Name: "kd_sock_revnat", Type: ebpf.Hash, KeySize: 8, ValueSize: 16, MaxEntries: 16})
	must(t, err)
	must(t, stale.Pin(filepath.Join(dir, "kd_sock_revnat")))
	stale.Close()
	if _, err := loader.Load(context.Background(), loader.Options{PinDir: dir}); !errors.Is(err, loader.ErrIncompatibleMap) {
		t.Fatalf("load over an incompatible pin: %v, want ErrIncompatibleMap", err)
	}
	d, err := loader.Load(context.Background(), loader.Options{PinDir: dir, ReplaceIncompatible: true})
	must(t, err)
	defer d.Remove()
	for _, n := range d.Adopted {
		if n == bpf.ContainerMapKdServices {
			t.Fatal("incompatible map was adopted")
		}
	}
	if len(d.Replaced) != 1 || d.Replaced[0] != bpf.ContainerMapKdServices {
		t.Errorf("Replaced = %v, want [%s]", d.Replaced, bpf.ContainerMapKdServices)
	}
	if len(d.Unpinned) != 1 || d.Unpinned[0] != "kd_sock_revnat" {
		t.Errorf("Unpinned = %v, want [kd_sock_revnat]", d.Unpinned)
	}
	if _, err := os.Stat(filepath.Join(dir, "kd_sock_revnat")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale pin is still there: %v", err)
	}
	// The new map works: the datapath's own pin is a fresh, empty services map.
	if _, err := os.Stat(filepath.Join(dir, bpf.ContainerMapKdServices)); err != nil {
		t.Errorf("services map not pinned: %v", err)
	}
}
