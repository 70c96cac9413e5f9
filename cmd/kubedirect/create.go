package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/spf13/cobra"
)

type createOptions struct {
	file       string
	dryRun     bool
	retain     bool
	kubeconfig string
	wait       time.Duration // validate the cluster at the end, retrying for up to this long (0: no validation)
}

func newCreateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create a resource"}
	o := &createOptions{}
	cluster := &cobra.Command{
		Use:   "cluster -f FILE",
		Short: "Create a cluster from a spec file",
		Example: `  kubedirect create cluster -f examples/kind.yaml
  kubedirect create cluster -f examples/kind.yaml --dry-run
  cat spec.yaml | kubedirect create cluster -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCreateCluster(cmd.Context(), g, o) },
	}
	f := cluster.Flags()
	f.StringVarP(&o.file, "file", "f", "", `cluster spec file ("-" reads standard input)`)
	f.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print what would be created")
	f.BoolVar(&o.retain, "retain", false, "keep what a failed create made, for debugging")
	f.DurationVar(&o.wait, "wait", 0, "after creating, validate the cluster as 'validate cluster' does, retrying for up to this long")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file to merge the cluster's context into (default $KUBECONFIG or ~/.kube/config)")
	_ = cluster.MarkFlagRequired("file")
	cmd.AddCommand(cluster)
	return cmd
}

func runCreateCluster(ctx context.Context, g *globals, o *createOptions) error {
	c, err := spec.LoadFile(o.file, g.stdin)
	if err != nil {
		return err
	}
	if o.dryRun {
		return printPlan(ctx, g, c)
	}
	switch c.Spec.Provider {
	case spec.ProviderAWS:
		return createAWS(ctx, g, c, o)
	default:
		return createKind(ctx, g, c, o)
	}
}

// printPlan writes what create would make, without touching anything.
func printPlan(ctx context.Context, g *globals, c *spec.Cluster) error {
	if c.Spec.Provider == spec.ProviderAWS {
		if err := planAWS(ctx, g, c); err != nil {
			return err
		}
	} else {
		out, err := kind.ConfigYAML(c)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "# kind cluster config for %q\n---\n%s", c.Metadata.Name, out)
	}
	return printDataplane(g, c)
}

func createKind(ctx context.Context, g *globals, c *spec.Cluster, o *createOptions) error {
	p := g.printer()
	log := g.logger()
	provider := kind.NewProvider(kind.WithLogger(p.KindLogger(log)))
	exists, err := provider.Exists(ctx, c.Metadata.Name)
	if err != nil {
		return err
	}
	if exists {
		// Running create again converges the dataplane (Helm upgrade) instead of failing.
		p.Println(fmt.Sprintf("Cluster %q exists; upgrading its dataplane ...", c.Metadata.Name))
		return installDataplane(ctx, g, p, provider, c, o)
	}
	p.Println(fmt.Sprintf("Creating cluster %q on kind (Kubernetes %s, %s) ...", c.Metadata.Name, c.Spec.KubernetesVersion, c.Spec.Kind.NodeImage))
	if err := provider.Create(ctx, c, kind.CreateOptions{Retain: o.retain, KubeconfigPath: o.kubeconfig}); err != nil {
		p.End(false)
		return err
	}
	p.End(true)
	if err := installDataplane(ctx, g, p, provider, c, o); err != nil {
		if errors.Is(err, errValidationFailed) || o.retain {
			return err // the cluster is complete and worth inspecting, or the user asked to keep it
		}
		// A cluster without its dataplane is half-created: remove it, as kind does with its own failures.
		log.Warn("removing the cluster after a failed dataplane install (use --retain to keep it)", "cluster", c.Metadata.Name)
		if derr := provider.Delete(context.WithoutCancel(ctx), c.Metadata.Name, o.kubeconfig); derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
	p.Println(fmt.Sprintf("Cluster %q is up; kubectl context %q.", c.Metadata.Name, kind.ContextName(c.Metadata.Name)))
	return nil
}

// errValidationFailed marks a cluster that was made but failed a validation check (exit code 2).
var errValidationFailed = errors.New("failed")
