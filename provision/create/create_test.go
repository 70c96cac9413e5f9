package create

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/internal/testutil"
	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// fakeProvider records the calls the flow makes; the zero value is a provider of no cluster.
type fakeProvider struct {
	exists     bool
	createErr  error
	deliverErr error
	calls      []string
	retained   bool
}

func (f *fakeProvider) Name() spec.Provider { return "fake" }
func (f *fakeProvider) WritePlan(_ context.Context, c *spec.Cluster, w io.Writer) error {
	_, err := io.WriteString(w, "# fake plan for "+c.Metadata.Name+"\n")
	return err
}
func (f *fakeProvider) Create(_ context.Context, _ *spec.Cluster, opts ...provision.CreateOption) error {
	o := provision.BuildCreateOptions(opts...)
	if o.Image != nil {
		f.calls = append(f.calls, "create with image")
	} else {
		f.calls = append(f.calls, "create")
	}
	f.retained = o.Retain
	if f.createErr == nil {
		f.exists = true
	}
	return f.createErr
}
func (f *fakeProvider) Delete(context.Context, *spec.Cluster, ...provision.DeleteOption) error {
	f.calls = append(f.calls, "delete")
	f.exists = false
	return nil
}
func (f *fakeProvider) Exists(context.Context, *spec.Cluster) (bool, error) { return f.exists, nil }
func (f *fakeProvider) List(context.Context) ([]string, error)              { return nil, nil }
func (f *fakeProvider) Get(context.Context, string) (*spec.Cluster, error) {
	return nil, provision.ErrNotFound
}
func (f *fakeProvider) Kubeconfig(context.Context, *spec.Cluster) ([]byte, error) {
	f.calls = append(f.calls, "kubeconfig")
	return []byte("apiVersion: v1\nkind: Config\ncurrent-context: fake-demo\n"), nil
}
func (f *fakeProvider) ExportKubeconfig(context.Context, *spec.Cluster, string) (string, error) {
	return "fake-demo", nil
}
func (f *fakeProvider) APIServerAddress(context.Context, *spec.Cluster) (string, int, error) {
	return "192.0.2.1", 6443, nil
}
func (f *fakeProvider) NodeArch(*spec.Cluster) (string, error) { return "amd64", nil }
func (f *fakeProvider) DeliverImage(_ context.Context, _ *spec.Cluster, img *install.SelfImage, _ []byte) error {
	f.calls = append(f.calls, "deliver "+img.Image.Tag)
	return f.deliverErr
}
func (f *fakeProvider) NodeLogHint(_ *spec.Cluster, node string) string { return "logs of " + node }

func demo() *spec.Cluster {
	c := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.ObjectMeta{Name: "demo"}, Spec: spec.ClusterSpec{Provider: spec.ProviderKind}}
	c.SetDefaults()
	return c
}

func options(out *bytes.Buffer) Options {
	return Options{
		Printer: progress.New(out, false),
		NodeBinary: func(context.Context, string) ([]byte, string, error) {
			return []byte("a node binary"), "test", nil
		},
	}
}

// TestProviderWithoutImageDeliveryIsUpWithoutDataplane: a provider that cannot bring the self-image
// to its nodes (and no spec.dataplane.image) gets its cluster made, the chart skipped with a reason,
// "is up" printed and no error.
func TestProviderWithoutImageDeliveryIsUpWithoutDataplane(t *testing.T) {
	f := &fakeProvider{deliverErr: provision.ErrNoImageDelivery}
	var out bytes.Buffer
	if err := Cluster(context.Background(), f, demo(), options(&out)); err != nil {
		t.Fatalf("create: %v\n%s", err, out.String())
	}
	testutil.WantContains(t, "output", out.String(), "Not installing the kubedirect dataplane", `Cluster "demo" is up`, "set spec.dataplane.image")
	if got := strings.Join(f.calls, ","); got != "create with image,kubeconfig,deliver "+install.TagFor([]byte("a node binary")) {
		t.Errorf("calls %s", got)
	}
}

// TestFailedCreateRemovesTheClusterUnlessRetained: a step failing after the infrastructure was made
// removes the cluster; with Retain it stays; a cluster that existed before is never removed.
func TestFailedCreateRemovesTheClusterUnlessRetained(t *testing.T) {
	boom := errors.New("load image: node demo-worker: no space left")
	for _, tc := range []struct {
		name          string
		existed       bool
		retain        bool
		wantDeleteRun bool
	}{
		{"new cluster", false, false, true},
		{"retain", false, true, false},
		{"existing cluster", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeProvider{exists: tc.existed, deliverErr: boom}
			var out bytes.Buffer
			o := options(&out)
			o.Retain = tc.retain
			err := Cluster(context.Background(), f, demo(), o)
			if !errors.Is(err, boom) {
				t.Fatalf("create returned %v, want the step's error", err)
			}
			deleted := strings.Contains(strings.Join(f.calls, ","), "delete")
			if deleted != tc.wantDeleteRun {
				t.Errorf("deleted %v, want %v (calls %v)", deleted, tc.wantDeleteRun, f.calls)
			}
			if f.retained != tc.retain {
				t.Errorf("provider saw retain %v", f.retained)
			}
			if !strings.Contains(out.String(), "✗ Loading image") {
				t.Errorf("the failed step is not marked:\n%s", out.String())
			}
		})
	}
}

// TestExistingClusterIsUpgraded: create on an existing cluster says so and converges it.
func TestExistingClusterIsUpgraded(t *testing.T) {
	f := &fakeProvider{exists: true, deliverErr: provision.ErrNoImageDelivery}
	var out bytes.Buffer
	if err := Cluster(context.Background(), f, demo(), options(&out)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `Cluster "demo" exists; upgrading its dataplane`) {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestPublishedImageIsNotBuilt: with spec.dataplane.image nothing is built or delivered.
func TestPublishedImageIsNotBuilt(t *testing.T) {
	f := &fakeProvider{createErr: errors.New("stop after create")}
	c := demo()
	c.Spec.Dataplane.Image = "example.com/kubedirect:v1"
	var out bytes.Buffer
	o := options(&out)
	o.NodeBinary = func(context.Context, string) ([]byte, string, error) {
		t.Fatal("built a node binary although the spec names an image")
		return nil, "", nil
	}
	_ = Cluster(context.Background(), f, c, o)
	if strings.Contains(strings.Join(f.calls, ","), "deliver") {
		t.Errorf("delivered an image: %v", f.calls)
	}
}

// TestPlanWritesProviderPlanAndChart: --dry-run prints the provider's plan, then the chart.
func TestPlanWritesProviderPlanAndChart(t *testing.T) {
	var out bytes.Buffer
	if err := Plan(context.Background(), &fakeProvider{}, demo(), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "# fake plan for demo\n") || !strings.Contains(s, "kind: DaemonSet") {
		t.Errorf("plan:\n%s", s)
	}
}
