package privfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMkdirAllRestrictsAnExistingDirectory: a node directory left 0755 (kubelet's hostPath, an older
// release) becomes 0700; a new one is made 0700.
func TestMkdirAllRestrictsAnExistingDirectory(t *testing.T) {
	old := filepath.Join(t.TempDir(), "old")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{old, filepath.Join(t.TempDir(), "a", "new")} {
		if err := MkdirAll(dir); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != DirMode {
			t.Errorf("%s: mode %04o, want %04o", dir, st.Mode().Perm(), DirMode)
		}
	}
}
