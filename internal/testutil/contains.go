package testutil

import (
	"strings"
	"testing"
)

// WantContains reports each of wants that got lacks, naming what got is (for example "plan" or
// "dry-run output") and showing got once.
func WantContains(t testing.TB, what, got string, wants ...string) {
	t.Helper()
	var missing []string
	for _, want := range wants {
		if !strings.Contains(got, want) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s lacks %q:\n%s", what, missing, got)
	}
}
