package kind

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/spec"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestConfigGolden(t *testing.T) {
	for _, name := range []string{"kind", "kind-dsr"} {
		t.Run(name, func(t *testing.T) {
			c, err := spec.LoadFile(filepath.Join("..", "..", "examples", name+".yaml"), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ConfigYAML(c)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("kind config differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestConfigTranslation(t *testing.T) {
	c := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.ObjectMeta{Name: "t"}, Spec: spec.ClusterSpec{
		Provider: spec.ProviderKind,
		NodeGroups: []spec.NodeGroup{
			{Name: "w", Role: spec.RoleWorker, Count: 3},
			{Name: "cp", Role: spec.RoleControlPlane, Count: 1},
		},
		Networking: spec.Networking{PodCIDR: "10.10.0.0/16", ServiceCIDR: "10.20.0.0/16"},
		Kind:       &spec.KindSpec{NodeImage: "local/node:x"},
	}}
	c.SetDefaults()
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	cfg := Config(c)
	n := cfg.Networking
	if n.KubeProxyMode != "none" || !n.DisableDefaultCNI || n.PodSubnet != "10.10.0.0/16" || n.ServiceSubnet != "10.20.0.0/16" {
		t.Errorf("networking = %+v", n)
	}
	if len(cfg.Nodes) != 4 {
		t.Fatalf("got %d nodes, want 4", len(cfg.Nodes))
	}
	if cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole {
		t.Errorf("first node is %s; kind needs the control plane first", cfg.Nodes[0].Role)
	}
	for i, node := range cfg.Nodes {
		if node.Image != "local/node:x" {
			t.Errorf("node %d image %q", i, node.Image)
		}
		if want := map[bool]string{true: "cp", false: "w"}[i == 0]; node.Labels[NodeGroupLabel] != want {
			t.Errorf("node %d group label %q, want %q", i, node.Labels[NodeGroupLabel], want)
		}
	}
}

func TestKubeconfigIsRestricted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte("apiVersion: v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := restrictKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

func TestDefaultKubeconfigPath(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "b")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", strings.Join([]string{filepath.Join(dir, "a"), existing}, string(os.PathListSeparator)))
	if got := provision.DefaultKubeconfigPath(); got != existing {
		t.Errorf("got %q, want the first existing entry %q", got, existing)
	}
}
