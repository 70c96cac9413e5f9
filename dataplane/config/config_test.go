package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kubedirect/kubedirect/provision/spec"
)

// load writes body as an agent config file and loads it.
func load(t *testing.T, body string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// TestEmptyConfigIsDefaultSpec: an agent whose config file sets nothing runs exactly as the chart
// configures it for a cluster spec that sets nothing.
func TestEmptyConfigIsDefaultSpec(t *testing.T) {
	got, err := load(t, "{}\n")
	if err != nil {
		t.Fatal(err)
	}
	var c spec.Cluster
	c.SetDefaults()
	want := FromSpec(&c)
	want.PodCIDR, want.ServiceCIDR = "", "" // the agent has no default ranges: they come from the nodes
	want.SetDefaults()
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("empty config\n got %+v\nwant %+v", *got, want)
	}
}

// TestLoadRejectsUnknownMode: a config naming a mode the dataplane does not have fails to load
// instead of silently running as tunnel.
func TestLoadRejectsUnknownMode(t *testing.T) {
	if _, err := load(t, "externalServiceMode: DSR\n"); err == nil {
		t.Fatal("Load accepted externalServiceMode DSR")
	}
}
