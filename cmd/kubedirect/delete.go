package main

import (
	"fmt"

	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/spf13/cobra"
)

// clusterRef names a cluster by --name or by its spec file, as delete, export and validate accept.
type clusterRef struct {
	name string
	file string
}

func (r *clusterRef) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.name, "name", "", "cluster name")
	cmd.Flags().StringVarP(&r.file, "file", "f", "", `cluster spec file ("-" reads standard input)`)
	cmd.MarkFlagsOneRequired("name", "file")
	cmd.MarkFlagsMutuallyExclusive("name", "file")
}

// resolve returns the cluster's spec: loaded from the file, or a kind cluster of that name.
func (r *clusterRef) resolve(g *globals) (*spec.Cluster, error) {
	if r.file != "" {
		return spec.LoadFile(r.file, g.stdin)
	}
	c := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.ObjectMeta{Name: r.name}, Spec: spec.ClusterSpec{Provider: spec.ProviderKind}}
	c.SetDefaults()
	return c, nil
}

func newDeleteCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "delete", Short: "Delete a resource"}
	ref := &clusterRef{}
	var kubeconfig string
	cluster := &cobra.Command{
		Use:   "cluster (--name NAME | -f FILE)",
		Short: "Delete a cluster and everything kubedirect made for it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ref.resolve(g)
			if err != nil {
				return err
			}
			if c.Spec.Provider != spec.ProviderKind {
				return deleteAWS(cmd.Context(), g, c)
			}
			p := g.printer()
			provider := kind.NewProvider(kind.WithLogger(p.KindLogger(g.logger())))
			exists, err := provider.Exists(cmd.Context(), c.Metadata.Name)
			if err != nil {
				return err
			}
			if !exists {
				p.Println(fmt.Sprintf("Cluster %q does not exist; nothing to delete.", c.Metadata.Name))
				return nil
			}
			return p.Step(fmt.Sprintf("Deleting cluster %q", c.Metadata.Name), func() error {
				return provider.Delete(cmd.Context(), c.Metadata.Name, kubeconfig)
			})
		},
	}
	ref.addFlags(cluster)
	cluster.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file to remove the cluster's context from")
	cmd.AddCommand(cluster)
	return cmd
}
