// Package provision puts the places a cluster's machines come from (kind, AWS) behind one interface,
// as kind's providers.Provider does for its node runtimes. A Provider makes, finds, lists and deletes
// clusters, hands out the admin kubeconfig, says where the agents reach the API server and delivers
// kubedirect's own image to the nodes; provision/create runs the same list of steps (infrastructure,
// image delivery, chart, wait, validate) on any of them, so the CLI only parses flags and prints.
//
// Every call that does I/O takes a context first; optional arguments use the options pattern.
package provision

import (
	"context"
	"errors"
	"io"

	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/kubedirect/kubedirect/provision/validate"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultKubeconfigPath is the kubeconfig file kubectl reads first, by client-go's own rule: the first
// $KUBECONFIG entry that exists (else its last entry), or ~/.kube/config. create and export write the
// cluster's context there when no path is given.
func DefaultKubeconfigPath() string { return clientcmd.NewDefaultPathOptions().GetDefaultFilename() }

// ErrNotFound is returned (wrapped) when a named cluster does not exist.
var ErrNotFound = errors.New("cluster not found")

// ErrNoImageDelivery is returned by DeliverImage when the provider cannot bring the self-image to the
// nodes; the dataplane then needs spec.dataplane.image.
var ErrNoImageDelivery = errors.New("the provider cannot deliver the self-image to the nodes")

// Provider makes and removes clusters on one kind of infrastructure.
type Provider interface {
	// Name is the spec.provider value the provider serves.
	Name() spec.Provider
	// WritePlan writes what Create would make for c, changing nothing and calling no remote API that
	// needs credentials (--dry-run).
	WritePlan(ctx context.Context, c *spec.Cluster, w io.Writer) error
	// Create makes (or resumes) the cluster's machines and its Kubernetes control plane, and returns
	// once the API server answers. Nodes stay NotReady until the dataplane (the CNI) runs.
	Create(ctx context.Context, c *spec.Cluster, opts ...CreateOption) error
	// Delete removes everything the provider made for c. It returns an error wrapping ErrNotFound,
	// having done nothing, when the cluster does not exist.
	Delete(ctx context.Context, c *spec.Cluster, opts ...DeleteOption) error
	// Exists reports whether the cluster has been created (fully or in part).
	Exists(ctx context.Context, c *spec.Cluster) (bool, error)
	// List returns the names of the provider's clusters.
	List(ctx context.Context) ([]string, error)
	// Get returns the spec of an existing cluster by name: as applied (AWS keeps it in the state store)
	// or rebuilt from what is running (kind). It wraps ErrNotFound when there is no such cluster.
	Get(ctx context.Context, name string) (*spec.Cluster, error)
	// Kubeconfig returns an admin kubeconfig that reaches the API server from this machine.
	Kubeconfig(ctx context.Context, c *spec.Cluster) ([]byte, error)
	// ExportKubeconfig merges the admin context into the kubeconfig file at path (the default file
	// when empty) with mode 0600 and returns the context's name.
	ExportKubeconfig(ctx context.Context, c *spec.Cluster, path string) (string, error)
	// APIServerAddress is where the agents reach the API server from the nodes' network (there is no
	// kube-proxy, so not the kubernetes Service): host and port.
	APIServerAddress(ctx context.Context, c *spec.Cluster) (string, int, error)
	// NodeArch is the CPU architecture (a GOARCH value) of the cluster's nodes, for the self-image.
	NodeArch(c *spec.Cluster) (string, error)
	// DeliverImage makes the self-image available to the container runtime of every node, present and
	// future, so the chart can run it with pull policy Never. kubeconfig reaches the cluster as admin.
	DeliverImage(ctx context.Context, c *spec.Cluster, img *install.SelfImage, kubeconfig []byte) error
	// NodeLogHint tells the user how to read the bootstrap log of a node that did not come up.
	NodeLogHint(c *spec.Cluster, node string) string
}

// CreateOptions tune Provider.Create.
type CreateOptions struct {
	// Retain keeps what a failed create made, for debugging.
	Retain bool
	// KubeconfigPath is the kubeconfig file to merge the cluster's context into; empty means the
	// default ($KUBECONFIG or ~/.kube/config).
	KubeconfigPath string
	// Image is the self-image the nodes will run (nil with spec.dataplane.image). A provider whose
	// nodes fetch it while they boot (AWS) publishes it during Create.
	Image *install.SelfImage
}

// CreateOption sets a CreateOptions field.
type CreateOption func(*CreateOptions)

// CreateWithRetain keeps what a failed create made.
func CreateWithRetain(retain bool) CreateOption { return func(o *CreateOptions) { o.Retain = retain } }

// CreateWithKubeconfigPath names the kubeconfig file to merge the cluster's context into.
func CreateWithKubeconfigPath(path string) CreateOption {
	return func(o *CreateOptions) { o.KubeconfigPath = path }
}

// CreateWithImage gives Create the self-image the nodes will run.
func CreateWithImage(img *install.SelfImage) CreateOption {
	return func(o *CreateOptions) { o.Image = img }
}

// BuildCreateOptions applies opts to the zero options.
func BuildCreateOptions(opts ...CreateOption) CreateOptions { return build(opts) }

// DeleteOptions tune Provider.Delete.
type DeleteOptions struct {
	// KubeconfigPath is the kubeconfig file to remove the cluster's context from; empty means the default.
	KubeconfigPath string
}

// DeleteOption sets a DeleteOptions field.
type DeleteOption func(*DeleteOptions)

// DeleteWithKubeconfigPath names the kubeconfig file to remove the cluster's context from.
func DeleteWithKubeconfigPath(path string) DeleteOption {
	return func(o *DeleteOptions) { o.KubeconfigPath = path }
}

// BuildDeleteOptions applies opts to the zero options.
func BuildDeleteOptions(opts ...DeleteOption) DeleteOptions { return build(opts) }

// CloudController is implemented by providers whose kubelets run with --cloud-provider=external:
// create installs the cloud controller manager's chart (manifests) before the dataplane, and the
// Nodes stay tainted uninitialised until it runs.
type CloudController interface {
	// CloudControllerValues are the values of the cloud controller manager's chart for c.
	CloudControllerValues(c *spec.Cluster) (map[string]any, error)
}

// Describer is implemented by providers that tell the user what create is about to do.
type Describer interface {
	// Describe is the line printed before a new cluster is made.
	Describe(c *spec.Cluster) string
	// CreateStep names the progress step Create runs as; "" when Create reports its own steps (kind).
	CreateStep(c *spec.Cluster) string
}

// ValidationTuner is implemented by providers whose nodes the validation's outside client reaches
// differently from kind (addresses, ports the firewall admits); it returns an error, before anything
// runs, when the cluster's settings cannot let the client through.
type ValidationTuner interface {
	TuneValidator(c *spec.Cluster, v *validate.Validator) error
}

// build applies option functions to the zero value of their options struct (kind's functional options).
func build[O any, F ~func(*O)](opts []F) O {
	var o O
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
