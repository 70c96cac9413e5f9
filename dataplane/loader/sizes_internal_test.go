package loader

import (
	"reflect"
	"testing"
)

// TestMapSizesNameRealMaps: every capacity the configuration can set reaches the map its tag names.
func TestMapSizesNameRealMaps(t *testing.T) {
	var s MapSizes
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(1000 + i))
	}
	got, err := sizesByName(s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if got[name] != uint32(1000+i) {
			t.Errorf("%s: size %d, want %d", name, got[name], 1000+i)
		}
	}
}
