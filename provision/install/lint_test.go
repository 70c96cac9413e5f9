package install

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubedirect/kubedirect/manifests"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestChartLints runs Helm's own linter (what `helm lint --strict` runs) over the chart as it is on
// disk, with only the value a hand install must give: anyone can `helm install` it.
func TestChartLints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kubedirect")
	err := fs.WalkDir(manifests.Chart(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := fs.ReadFile(manifests.Chart(), path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	res := lint.AllWithKubeVersion(dir, map[string]any{"apiServer": map[string]any{"host": "10.0.0.1"}}, Namespace, nil)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		} else {
			t.Logf("helm lint: %s", m)
		}
	}
}
