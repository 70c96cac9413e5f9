// Package create runs `create cluster` for any provision.Provider as a list of steps, the way kind's
// create runs its actions: the infrastructure, delivery of kubedirect's own image to the nodes, the
// Helm chart, the wait for every node and agent, and (with a wait) the validation. A failed create
// removes a cluster it made unless asked to retain it.
package create

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/observe"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/kubedirect/kubedirect/provision/validate"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrValidationFailed marks a cluster that was made but failed a validation check; such a cluster is
// kept, as it is complete and worth inspecting.
var ErrValidationFailed = errors.New("failed")

// DefaultNodeTimeout bounds the wait for the nodes and agents after the chart is installed: kind
// nodes are Ready within a minute, cloud workers may still be joining.
const DefaultNodeTimeout = 10 * time.Minute

// nodeCount is the number of nodes the spec asks for.
func nodeCount(c *spec.Cluster) int {
	n := 0
	for _, g := range c.Spec.NodeGroups {
		n += g.Count
	}
	return n
}

// Options tune Cluster.
type Options struct {
	// Retain keeps what a failed create made.
	Retain bool
	// KubeconfigPath is the kubeconfig file to merge the cluster's context into (default: $KUBECONFIG
	// or ~/.kube/config).
	KubeconfigPath string
	// Wait, when positive, ends create with Validate retrying for up to this long.
	Wait time.Duration
	// Validate validates the cluster as `validate cluster --wait` does and reports the outcome (the CLI
	// prints the report); a failed check wraps ErrValidationFailed. Required when Wait > 0.
	Validate func(ctx context.Context, c *spec.Cluster, wait time.Duration) error
	// Printer shows the steps. Default: none.
	Printer *progress.Printer
	// Log receives details. Default: discarded.
	Log *slog.Logger
	// NodeBinary returns the binary for the nodes' architecture. Default: install.NodeBinary.
	NodeBinary func(ctx context.Context, arch string) ([]byte, string, error)
	// NodeTimeout bounds the wait for every node to be Ready and every agent ready. Default:
	// DefaultNodeTimeout.
	NodeTimeout time.Duration
}

// run is the state the steps share.
type run struct {
	p          provision.Provider
	c          *spec.Cluster
	o          Options
	pr         *progress.Printer
	existed    bool
	image      install.Image
	self       *install.SelfImage
	skipChart  bool
	kubeconfig []byte
}

// Step is one action of create.
type Step struct {
	// Name is shown as the step's progress line; "" runs the step without one (it prints its own).
	Name string
	// Run does the step.
	Run func(ctx context.Context, r *run) error
}

// Steps are create's actions in order.
func Steps() []func(r *run) []Step {
	return []func(r *run) []Step{buildImage, infrastructure, deliverImage, installCloudController, installChart, waitReady, validateCluster}
}

// Cluster creates the cluster c describes with p, or, when it exists, converges it (the provider's
// resources where it can, the dataplane always), and returns nil once every node and agent is ready.
func Cluster(ctx context.Context, p provision.Provider, c *spec.Cluster, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Printer == nil {
		o.Printer = progress.New(io.Discard, true)
	}
	if o.NodeBinary == nil {
		o.NodeBinary = install.NodeBinary
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	existed, err := p.Exists(ctx, c)
	if err != nil {
		return err
	}
	r := &run{p: p, c: c, o: o, pr: o.Printer, existed: existed}
	if existed {
		o.Printer.Println(fmt.Sprintf("Cluster %q exists; upgrading its dataplane ...", c.Metadata.Name))
	} else if d, ok := p.(provision.Describer); ok {
		o.Printer.Println(d.Describe(c))
	}
	for _, steps := range Steps() {
		for _, s := range steps(r) {
			if err := r.do(ctx, s); err != nil {
				return r.fail(ctx, err)
			}
		}
	}
	if r.skipChart {
		o.Printer.Println(fmt.Sprintf("Cluster %q is up without the kubedirect dataplane: nodes stay NotReady until it runs (set spec.dataplane.image).", c.Metadata.Name))
		return nil
	}
	o.Printer.Println(fmt.Sprintf("Cluster %q is up; kubectl context %q.", c.Metadata.Name, contextName(r)))
	return nil
}

func (r *run) do(ctx context.Context, s Step) error {
	if s.Name == "" {
		err := s.Run(ctx, r)
		r.pr.End(err == nil) // close the provider's last step of its own
		return err
	}
	return r.pr.Step(s.Name, func() error { return s.Run(ctx, r) })
}

// fail removes a cluster this run made, unless it is worth keeping: the user asked (--retain), it
// existed before, or it is complete and only failed validation.
func (r *run) fail(ctx context.Context, err error) error {
	if r.existed || r.o.Retain || errors.Is(err, ErrValidationFailed) {
		return err
	}
	r.o.Log.Warn("removing the cluster after a failed create (use --retain to keep it)", "cluster", r.c.Metadata.Name)
	derr := r.p.Delete(context.WithoutCancel(ctx), r.c, provision.DeleteWithKubeconfigPath(r.o.KubeconfigPath))
	if derr != nil && !errors.Is(derr, provision.ErrNotFound) {
		return errors.Join(err, fmt.Errorf("remove the failed cluster: %w", derr))
	}
	return err
}

func contextName(r *run) string {
	if r.kubeconfig != nil {
		if name, err := install.CurrentContext(r.kubeconfig); err == nil {
			return name
		}
	}
	return r.c.Metadata.Name
}

// infrastructure makes the machines and the control plane (or converges them).
func infrastructure(r *run) []Step {
	name := ""
	if d, ok := r.p.(provision.Describer); ok {
		name = d.CreateStep(r.c)
	}
	return []Step{{Name: name, Run: func(ctx context.Context, r *run) error {
		err := r.p.Create(ctx, r.c, provision.CreateWithRetain(r.o.Retain), provision.CreateWithKubeconfigPath(r.o.KubeconfigPath), provision.CreateWithImage(r.self))
		if err != nil {
			return err
		}
		r.kubeconfig, err = r.p.Kubeconfig(ctx, r.c)
		return err
	}}}
}

// buildImage builds kubedirect's self-image for the nodes (before the infrastructure: nodes that fetch
// it while they boot need it published early), unless the spec names a published image.
func buildImage(r *run) []Step {
	if r.c.Spec.Dataplane.Image != "" {
		r.image = install.PublishedImage(r.c.Spec.Dataplane.Image)
		return nil
	}
	return []Step{{Name: "Building the kubedirect image", Run: func(ctx context.Context, r *run) error {
		arch, err := r.p.NodeArch(r.c)
		if err != nil {
			return err
		}
		bin, from, err := r.o.NodeBinary(ctx, arch)
		if err != nil {
			return err
		}
		r.o.Log.Debug("node binary", "from", from, "bytes", len(bin))
		r.self, err = install.BuildSelfImage(bin, arch)
		if err != nil {
			return err
		}
		r.image = r.self.Image
		return nil
	}}}
}

// deliverImage brings the self-image to every node, unless the provider cannot.
func deliverImage(r *run) []Step {
	if r.c.Spec.Dataplane.Image != "" {
		return nil
	}
	return []Step{{Name: "", Run: func(ctx context.Context, r *run) error {
		return r.pr.Step(fmt.Sprintf("Loading image %s into the nodes", r.self.Image.Ref()), func() error {
			err := r.p.DeliverImage(ctx, r.c, r.self, r.kubeconfig)
			if errors.Is(err, provision.ErrNoImageDelivery) {
				r.skipChart = true
				return nil
			}
			return err
		})
	}}}
}

// installCloudController installs or upgrades the cloud controller manager of a provider that needs
// one, as its own Helm release.
func installCloudController(r *run) []Step {
	cc, ok := r.p.(provision.CloudController)
	if !ok {
		return nil
	}
	return []Step{{Name: "", Run: func(ctx context.Context, r *run) error {
		return r.pr.Step("Installing the cloud controller manager (Helm)", func() error {
			ch, err := install.LoadCloudControllerChart()
			if err != nil {
				return err
			}
			vals, err := cc.CloudControllerValues(r.c)
			if err != nil {
				return err
			}
			act, err := install.Helm(ctx, ch, vals, install.HelmOptions{Kubeconfig: r.kubeconfig, Log: r.o.Log, Release: ch.Metadata.Name})
			r.o.Log.Debug("helm release", "release", ch.Metadata.Name, "action", act)
			return err
		})
	}}}
}

// installChart installs or upgrades the chart with Helm.
func installChart(*run) []Step {
	return []Step{{Name: "", Run: func(ctx context.Context, r *run) error {
		if r.skipChart {
			r.pr.Println(fmt.Sprintf("Not installing the kubedirect dataplane: the %s provider cannot deliver kubedirect's own image to the nodes; set spec.dataplane.image to a published image.", r.p.Name()))
			return nil
		}
		return r.pr.Step("Installing the kubedirect dataplane (Helm)", func() error {
			host, port, err := r.p.APIServerAddress(ctx, r.c)
			if err != nil {
				return err
			}
			ch, err := install.LoadChart()
			if err != nil {
				return err
			}
			vals, err := install.Values(r.c, install.ValuesOptions{Image: r.image, APIServerHost: host, APIServerPort: port})
			if err != nil {
				return err
			}
			act, err := install.Helm(ctx, ch, vals, install.HelmOptions{Kubeconfig: r.kubeconfig, Log: r.o.Log})
			r.o.Log.Debug("helm release", "release", install.ReleaseName, "action", act)
			return err
		})
	}}}
}

// waitReady waits for every node the spec asks for to be Ready and the agent to run on each.
func waitReady(*run) []Step {
	return []Step{{Name: "", Run: func(ctx context.Context, r *run) error {
		if r.skipChart {
			return nil
		}
		return r.pr.Step("Waiting for every node and the agent on each", func() error {
			return install.WaitNodesAndAgents(ctx, r.kubeconfig, nodeCount(r.c), r.o.NodeTimeout, func(node string) string {
				return r.p.NodeLogHint(r.c, node)
			})
		})
	}}}
}

// validateCluster runs the validation when asked to wait.
func validateCluster(r *run) []Step {
	if r.o.Wait <= 0 {
		return nil
	}
	return []Step{{Name: "", Run: func(ctx context.Context, r *run) error {
		if r.skipChart {
			return nil
		}
		if r.o.Validate == nil {
			return errors.New("validate cluster: no validator given")
		}
		return r.o.Validate(ctx, r.c, r.o.Wait)
	}}}
}

// Plan writes what create would make, changing nothing: the provider's plan, then the chart's
// manifests with the values known before the nodes exist.
func Plan(ctx context.Context, p provision.Provider, c *spec.Cluster, w io.Writer) error {
	if err := p.WritePlan(ctx, c, w); err != nil {
		return err
	}
	o := install.ValuesOptions{APIServerPort: install.DefaultAPIServerPort}
	switch {
	case c.Spec.Dataplane.Image != "":
		o.Image = install.PublishedImage(c.Spec.Dataplane.Image)
	default:
		o.Image = install.Image{Repository: install.SelfImageRepository, Tag: "bin-<sha256 of the node binary>", PullPolicy: "Never"}
		if arch, err := p.NodeArch(c); err == nil {
			if self, err := os.Executable(); err == nil && install.CheckNodeBinary(self, arch) == nil && os.Getenv(install.NodeBinaryEnv) == "" {
				if b, err := os.ReadFile(self); err == nil {
					o.Image.Tag = install.TagFor(b)
				}
			}
		}
	}
	if c.Spec.Provider == spec.ProviderKind {
		// At install time this becomes the container's IP (see install.KindAPIServerAddress).
		o.APIServerHost = c.Metadata.Name + "-control-plane"
	} else {
		o.APIServerHost = "<api server address>"
	}
	out, err := install.Render(c, o)
	if err != nil {
		return fmt.Errorf("render dataplane chart: %w", err)
	}
	_, err = fmt.Fprintf(w, "# kubedirect dataplane: Helm release %q in namespace %s, image %s\n%s",
		install.ReleaseName, install.Namespace, o.Image.Ref(), out)
	return err
}

// VerifySettle is how long validation lets the agents catch up before a difference between their maps
// and the API server counts (observe.Verify).
const VerifySettle = 20 * time.Second

// Validator connects a validation to the cluster as its admin, through the provider's kubeconfig.
func Validator(ctx context.Context, p provision.Provider, c *spec.Cluster, log *slog.Logger) (*validate.Validator, error) {
	if t, ok := p.(provision.ValidationTuner); ok {
		// Settings that keep the client out are reported before anything is asked of the cluster.
		if err := t.TuneValidator(c, &validate.Validator{}); err != nil {
			return nil, fmt.Errorf("validate cluster %q: %w", c.Metadata.Name, err)
		}
	}
	ok, err := p.Exists(ctx, c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("validate cluster: %s cluster %q: %w", p.Name(), c.Metadata.Name, provision.ErrNotFound)
	}
	kc, err := p.Kubeconfig(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %q: %w", c.Metadata.Name, err)
	}
	cs, err := install.Clientset(kc)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Metadata.Name, err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: kubeconfig: %w", c.Metadata.Name, err)
	}
	ac, err := agentexec.New(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Metadata.Name, err)
	}
	v := &validate.Validator{Client: cs, Cluster: c.Metadata.Name, Prober: validate.HostProber{}, Log: log,
		Verify: func(ctx context.Context) (*observe.VerifyResult, error) {
			return observe.Verify(ctx, ac, VerifySettle, 2*time.Second)
		}}
	if t, ok := p.(provision.ValidationTuner); ok {
		if err := t.TuneValidator(c, v); err != nil {
			return nil, fmt.Errorf("validate cluster %q: %w", c.Metadata.Name, err)
		}
	}
	return v, nil
}
