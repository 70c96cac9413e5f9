package maps_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/bpf"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// TestSetHoldsEveryMapOfTheObjects: a map added to bpf/lib/maps.h without a Set field (or a Set field
// whose tag names no map) would be created by no one, or never pinned; Names comes from Set's tags.
func TestSetHoldsEveryMapOfTheObjects(t *testing.T) {
	spec, err := bpf.LoadContainer()
	if err != nil {
		t.Fatal(err)
	}
	var inC []string
	for name := range spec.Maps {
		if strings.HasPrefix(name, maps.NamePrefix) {
			inC = append(inC, name)
		}
	}
	slices.Sort(inC)
	inGo := slices.Sorted(slices.Values(maps.Names))
	if !slices.Equal(inC, inGo) {
		t.Fatalf("maps in the BPF objects %v, in maps.Set %v", inC, inGo)
	}
}
