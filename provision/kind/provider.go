package kind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"

	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/log"
)

// ErrNotFound is returned (wrapped) when a named cluster does not exist; it is provision.ErrNotFound.
var ErrNotFound = provision.ErrNotFound

// Provider creates kind clusters from kubedirect specs. It implements provision.Provider.
type Provider struct {
	kind *cluster.Provider
	log  *slog.Logger
}

var _ provision.Provider = (*Provider)(nil)

// Option configures a Provider.
type Option func(*options)

type options struct {
	logger log.Logger
	slog   *slog.Logger
}

// WithLogger routes kind's progress and warnings to logger.
func WithLogger(l log.Logger) Option { return func(o *options) { o.logger = l } }

// WithDebugLogger receives details (which nodes an image was loaded into). Default: discarded.
func WithDebugLogger(l *slog.Logger) Option { return func(o *options) { o.slog = l } }

// NewProvider returns a provider using the local Docker daemon (DOCKER_HOST is honoured).
func NewProvider(opts ...Option) *Provider {
	o := options{logger: log.NoopLogger{}, slog: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	return &Provider{kind: cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(o.logger)), log: o.slog}
}

// Name is kind.
func (p *Provider) Name() spec.Provider { return spec.ProviderKind }

// Describe is the line create prints before it starts.
func (p *Provider) Describe(c *spec.Cluster) string {
	return fmt.Sprintf("Creating cluster %q on kind (Kubernetes %s, %s) ...", c.Metadata.Name, c.Spec.KubernetesVersion, c.Spec.Kind.NodeImage)
}

// CreateStep is empty: kind reports its own steps through the logger.
func (p *Provider) CreateStep(*spec.Cluster) string { return "" }

// WritePlan writes the kind cluster config create would use.
func (p *Provider) WritePlan(_ context.Context, c *spec.Cluster, w io.Writer) error {
	out, err := ConfigYAML(c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "# kind cluster config for %q\n---\n%s", c.Metadata.Name, out)
	return err
}

// Create makes the cluster's nodes and Kubernetes control plane. Nodes stay NotReady until the
// kubedirect dataplane (the CNI) is installed. A failed create removes what it made unless Retain.
func (p *Provider) Create(ctx context.Context, c *spec.Cluster, opts ...provision.CreateOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := provision.BuildCreateOptions(opts...)
	// A running kind cluster cannot be changed: create on it converges only the dataplane.
	if ok, err := p.exists(ctx, c.Metadata.Name); err != nil || ok {
		return err
	}
	err := p.kind.Create(c.Metadata.Name,
		cluster.CreateWithV1Alpha4Config(Config(c)),
		cluster.CreateWithRetain(o.Retain),
		cluster.CreateWithKubeconfigPath(o.KubeconfigPath),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return fmt.Errorf("create kind cluster %q: %w", c.Metadata.Name, err)
	}
	return restrictKubeconfig(o.KubeconfigPath)
}

// Exists reports whether the cluster has nodes.
func (p *Provider) Exists(ctx context.Context, c *spec.Cluster) (bool, error) {
	return p.exists(ctx, c.Metadata.Name)
}

func (p *Provider) exists(ctx context.Context, name string) (bool, error) {
	names, err := p.List(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(names, name), nil
}

// Get returns the spec of a running cluster: kind keeps no spec, so it is the default one with the
// cluster's name (the name is all that delete, export and validate need).
func (p *Provider) Get(ctx context.Context, name string) (*spec.Cluster, error) {
	ok, err := p.exists(ctx, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("kind cluster %q: %w", name, ErrNotFound)
	}
	c := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.ObjectMeta{Name: name}, Spec: spec.ClusterSpec{Provider: spec.ProviderKind}}
	c.SetDefaults()
	return c, nil
}

// List returns the names of the kind clusters on this Docker daemon.
func (p *Provider) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names, err := p.kind.List()
	if err != nil {
		return nil, fmt.Errorf("list kind clusters (is Docker running and reachable? DOCKER_HOST=%q): %w", os.Getenv("DOCKER_HOST"), err)
	}
	return names, nil
}

// Delete removes the cluster's nodes and its kubeconfig context. It returns ErrNotFound, having done
// nothing, when there is no such cluster.
func (p *Provider) Delete(ctx context.Context, c *spec.Cluster, opts ...provision.DeleteOption) error {
	name := c.Metadata.Name
	o := provision.BuildDeleteOptions(opts...)
	ok, err := p.exists(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("kind cluster %q: %w", name, ErrNotFound)
	}
	if err := p.kind.Delete(name, o.KubeconfigPath); err != nil {
		return fmt.Errorf("delete kind cluster %q: %w", name, err)
	}
	return p.removeNetworkIfUnused(ctx)
}

// removeNetworkIfUnused removes kind's shared Docker network once no kind cluster is left on the
// daemon (kind itself keeps it), so deleting the last cluster leaves nothing behind.
func (p *Provider) removeNetworkIfUnused(ctx context.Context) error {
	names, err := p.List(ctx)
	if err != nil || len(names) > 0 {
		return err
	}
	network := os.Getenv("KIND_EXPERIMENTAL_DOCKER_NETWORK")
	if network == "" {
		network = "kind"
	}
	out, err := exec.CommandContext(ctx, "docker", "network", "rm", network).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such network") && !strings.Contains(string(out), "active endpoints") {
		return fmt.Errorf("remove docker network %q: %w: %s", network, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ExportKubeconfig merges the cluster's admin context into the kubeconfig at path (kind's default
// when empty) with file mode 0600, and returns the context's name.
func (p *Provider) ExportKubeconfig(ctx context.Context, c *spec.Cluster, path string) (string, error) {
	name := c.Metadata.Name
	ok, err := p.exists(ctx, name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("kind cluster %q: %w", name, ErrNotFound)
	}
	if err := p.kind.ExportKubeConfig(name, path, false); err != nil {
		return "", fmt.Errorf("export kubeconfig of %q: %w", name, err)
	}
	return ContextName(name), restrictKubeconfig(path)
}

// Kubeconfig returns the cluster's admin kubeconfig, with the API server's address as this machine
// reaches it.
func (p *Provider) Kubeconfig(ctx context.Context, c *spec.Cluster) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kc, err := p.kind.KubeConfig(c.Metadata.Name, false)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %q: %w", c.Metadata.Name, err)
	}
	return []byte(kc), nil
}

// APIServerAddress is the bootstrap control-plane node's IP and the API server's port there (see
// install.KindAPIServerAddress).
func (p *Provider) APIServerAddress(_ context.Context, c *spec.Cluster) (string, int, error) {
	return install.KindAPIServerAddress(p.kind, c.Metadata.Name)
}

// NodeArch is this machine's architecture: Docker runs the nodes on it.
func (p *Provider) NodeArch(*spec.Cluster) (string, error) { return runtime.GOARCH, nil }

// DeliverImage loads the self-image into every node that lacks it.
func (p *Provider) DeliverImage(ctx context.Context, c *spec.Cluster, img *install.SelfImage, _ []byte) error {
	loaded, err := install.LoadIntoKind(ctx, p.kind, c.Metadata.Name, img)
	p.log.Debug("image loaded", "image", img.Image.Ref(), "nodes", loaded)
	return err
}

// NodeLogHint names the commands that show a kind node's boot and kubelet logs.
func (p *Provider) NodeLogHint(_ *spec.Cluster, node string) string {
	return fmt.Sprintf("read its logs with `docker logs %s` and `docker exec %s journalctl -u kubelet`", node, node)
}

// ContextName is the kubeconfig context kind gives a cluster.
func ContextName(cluster string) string { return "kind-" + cluster }

// restrictKubeconfig keeps the admin credentials readable by their owner only, whatever the file's
// mode was before the merge.
func restrictKubeconfig(path string) error {
	if path == "" {
		path = provision.DefaultKubeconfigPath()
	}
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restrict kubeconfig %s: %w", path, err)
	}
	return nil
}
