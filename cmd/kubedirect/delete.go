package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/spf13/cobra"
)

// clusterRef names a cluster by --name or by its spec file, as delete, export and validate accept.
type clusterRef struct {
	name string
	file string
}

func (r *clusterRef) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.name, "name", "", "cluster name (kind, or aws with --state-store)")
	cmd.Flags().StringVarP(&r.file, "file", "f", "", `cluster spec file ("-" reads standard input)`)
	cmd.MarkFlagsOneRequired("name", "file")
	cmd.MarkFlagsMutuallyExclusive("name", "file")
}

// resolve returns the cluster's provider and spec: the spec file's, or the provider that has a
// cluster of that name (kind, or the state store's). A cluster that is nowhere wraps
// provision.ErrNotFound.
func (r *clusterRef) resolve(ctx context.Context, g *globals, p *progress.Printer) (provision.Provider, *spec.Cluster, error) {
	if r.file != "" {
		c, err := spec.LoadFile(r.file, g.stdin)
		if err != nil {
			return nil, nil, err
		}
		prov, err := g.provider(c, p)
		return prov, c, err
	}
	return g.find(ctx, r.name, p)
}

// clusterCommand is a verb's subcommand for one cluster named by --name or -f (use is its name and
// arguments before those flags); run gets the reference the flags filled.
func clusterCommand(use, short string, run func(cmd *cobra.Command, ref *clusterRef) error) *cobra.Command {
	ref := &clusterRef{}
	c := &cobra.Command{Use: use + " (--name NAME | -f FILE)", Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, ref) }}
	ref.addFlags(c)
	return c
}

// clusterName is the name the reference gives, for messages before the spec is known.
func (r *clusterRef) clusterName(c *spec.Cluster) string {
	if c != nil {
		return c.Metadata.Name
	}
	return r.name
}

func newDeleteCommand(g *globals) *cobra.Command {
	var kubeconfig string
	cluster := clusterCommand("cluster", "Delete a cluster and everything kubedirect made for it",
		func(cmd *cobra.Command, ref *clusterRef) error {
			ctx := cmd.Context()
			p := g.printer()
			prov, c, err := ref.resolve(ctx, g, p)
			if errors.Is(err, provision.ErrNotFound) {
				p.Println(fmt.Sprintf("Cluster %q does not exist; nothing to delete.", ref.clusterName(c)))
				return nil
			}
			if err != nil {
				return err
			}
			ok, err := prov.Exists(ctx, c)
			if err != nil {
				return err
			}
			if !ok {
				p.Println(fmt.Sprintf("Cluster %q does not exist; nothing to delete.", c.Metadata.Name))
				return nil
			}
			return p.Step(fmt.Sprintf("Deleting cluster %q", c.Metadata.Name), func() error {
				return prov.Delete(ctx, c, provision.DeleteWithKubeconfigPath(kubeconfig))
			})
		})
	cluster.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file to remove the cluster's context from")
	cmd := &cobra.Command{Use: "delete", Short: "Delete a resource"}
	cmd.AddCommand(cluster)
	return cmd
}
