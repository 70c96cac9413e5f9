package kind

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubedirect/kubedirect/provision/spec"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/log"
)

// ErrNotFound is returned when a named cluster does not exist.
var ErrNotFound = errors.New("cluster not found")

// Provider creates kind clusters from kubedirect specs.
type Provider struct {
	kind *cluster.Provider
}

// Option configures a Provider.
type Option func(*options)

type options struct {
	logger log.Logger
}

// WithLogger routes kind's progress and warnings to logger.
func WithLogger(l log.Logger) Option { return func(o *options) { o.logger = l } }

// NewProvider returns a provider using the local Docker daemon (DOCKER_HOST is honoured).
func NewProvider(opts ...Option) *Provider {
	o := options{logger: log.NoopLogger{}}
	for _, opt := range opts {
		opt(&o)
	}
	return &Provider{kind: cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(o.logger))}
}

// CreateOptions tune Create.
type CreateOptions struct {
	// Retain keeps the node containers of a failed create for debugging.
	Retain bool
	// KubeconfigPath is the kubeconfig file to merge the cluster's context into; empty means kind's
	// default ($KUBECONFIG or ~/.kube/config).
	KubeconfigPath string
}

// Create makes the cluster's nodes and Kubernetes control plane. Nodes stay NotReady until the
// kubedirect dataplane (the CNI) is installed. A failed create removes what it made unless Retain.
func (p *Provider) Create(ctx context.Context, c *spec.Cluster, o CreateOptions) error {
	if err := ctx.Err(); err != nil {
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

// Exists reports whether a cluster of that name has nodes.
func (p *Provider) Exists(ctx context.Context, name string) (bool, error) {
	names, err := p.List(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(names, name), nil
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
func (p *Provider) Delete(ctx context.Context, name, kubeconfigPath string) error {
	ok, err := p.Exists(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("kind cluster %q: %w", name, ErrNotFound)
	}
	if err := p.kind.Delete(name, kubeconfigPath); err != nil {
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
// when empty) with file mode 0600.
func (p *Provider) ExportKubeconfig(ctx context.Context, name, path string) error {
	ok, err := p.Exists(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("kind cluster %q: %w", name, ErrNotFound)
	}
	if err := p.kind.ExportKubeConfig(name, path, false); err != nil {
		return fmt.Errorf("export kubeconfig of %q: %w", name, err)
	}
	return restrictKubeconfig(path)
}

// Kubeconfig returns the cluster's admin kubeconfig; internal gives the API server address as seen
// from inside the nodes' network.
func (p *Provider) Kubeconfig(ctx context.Context, name string, internal bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return p.kind.KubeConfig(name, internal)
}

// Kind gives the underlying kind provider to the install and validate steps.
func (p *Provider) Kind() *cluster.Provider { return p.kind }

// ContextName is the kubeconfig context kind gives a cluster.
func ContextName(cluster string) string { return "kind-" + cluster }

// restrictKubeconfig keeps the admin credentials readable by their owner only, whatever the file's
// mode was before the merge.
func restrictKubeconfig(path string) error {
	if path == "" {
		path = DefaultKubeconfigPath()
	}
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restrict kubeconfig %s: %w", path, err)
	}
	return nil
}

// DefaultKubeconfigPath is the file kind writes when no path is given: the first entry of $KUBECONFIG
// that exists (else its last entry), or ~/.kube/config.
func DefaultKubeconfigPath() string {
	if env := os.Getenv("KUBECONFIG"); env != "" {
		paths := filepath.SplitList(env)
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return paths[len(paths)-1]
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".kube", "config")
}
