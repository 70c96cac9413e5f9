package main

import (
	"fmt"

	"github.com/kubedirect/kubedirect/manifests"
	"github.com/spf13/cobra"
)

func newExportCommand(g *globals) *cobra.Command {
	var path string
	kubeconfig := clusterCommand("kubeconfig", "Merge a cluster's admin context into a kubeconfig file (mode 0600)",
		func(cmd *cobra.Command, ref *clusterRef) error {
			prov, c, err := ref.resolve(cmd.Context(), g, nil)
			if err != nil {
				return err
			}
			name, err := prov.ExportKubeconfig(cmd.Context(), c, path)
			if err != nil {
				return err
			}
			g.printer().Println(fmt.Sprintf("Set kubectl context to %q", name))
			return nil
		})
	kubeconfig.Flags().StringVar(&path, "kubeconfig", "", "kubeconfig file to write (default $KUBECONFIG or ~/.kube/config)")
	cmd := &cobra.Command{Use: "export", Short: "Export a cluster's settings"}
	cmd.AddCommand(kubeconfig)
	cmd.AddCommand(&cobra.Command{
		Use:   "dashboard",
		Short: "Print the Grafana dashboard (JSON) of the agents' metrics, to import in Grafana",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(manifests.Dashboard())
			return err
		},
	})
	return cmd
}
