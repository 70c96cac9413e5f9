package loader

import (
	"reflect"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// fixedSize are the maps whose size the programs fix: one config entry, one slot per metric.
var fixedSize = map[string]bool{"kd_config": true, "kd_metrics": true}

// TestEveryMapIsSizedByTheConfig: every map but the fixed ones takes its capacity from the agent's
// configuration (its default when unset, what the configuration says otherwise), never from the
// placeholder max_entries in bpf/; a map added without a config.MapSizes field fails here.
func TestEveryMapIsSizedByTheConfig(t *testing.T) {
	got, err := sizesByName(config.MapSizes{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range maps.Names {
		if _, ok := got[name]; !ok && !fixedSize[name] {
			t.Errorf("map %s has no size in config.MapSizes (a field tagged ebpf:%q)", name, name)
		}
	}
	var s config.MapSizes
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(1000 + i))
	}
	if got, err = sizesByName(s); err != nil {
		t.Fatal(err)
	}
	for i := range v.NumField() {
		if name := v.Type().Field(i).Tag.Get("ebpf"); got[name] != uint32(1000+i) {
			t.Errorf("%s: size %d, want the configured %d", name, got[name], 1000+i)
		}
	}
}
