package cni

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "kubedirect-src")
	if err := os.WriteFile(src, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	for i := 0; i < 2; i++ { // idempotent
		if err := Install(InstallOptions{BinDir: bin, ConfDir: conf, Binary: src, MTU: 1450}); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(bin, "kubedirect.bin")); err != nil || string(b) != "binary" {
		t.Fatalf("plugin binary: %q %v", b, err)
	}
	w, err := os.ReadFile(filepath.Join(bin, "kubedirect"))
	if err != nil || !strings.Contains(string(w), `kubedirect.bin" cni "$@"`) {
		t.Fatalf("wrapper: %q %v", w, err)
	}
	if st, _ := os.Stat(filepath.Join(bin, "kubedirect")); st.Mode().Perm()&0o111 == 0 {
		t.Fatal("wrapper not executable")
	}
	var cl struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	data, err := os.ReadFile(filepath.Join(conf, ConfListName))
	if err != nil || json.Unmarshal(data, &cl) != nil || cl.CNIVersion != "1.0.0" || cl.Plugins[0]["type"] != "kubedirect" {
		t.Fatalf("conflist %s: %v", data, err)
	}
	if ents, _ := os.ReadDir(bin); len(ents) != 2 {
		t.Fatalf("temp files left in bin dir: %v", ents)
	}
}
