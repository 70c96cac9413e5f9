package main

import (
	"encoding/json"
	"fmt"

	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/spf13/cobra"
)

func newGetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "get", Short: "List resources"}
	var output string
	clusters := &cobra.Command{
		Use:   "clusters",
		Short: "List the kubedirect clusters on kind",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "name" && output != "json" {
				return fmt.Errorf("flag --output: unsupported value %q (want name or json)", output)
			}
			names, err := kind.NewProvider().List(cmd.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				type row struct {
					Name     string `json:"name"`
					Provider string `json:"provider"`
				}
				rows := []row{}
				for _, n := range names {
					rows = append(rows, row{n, "kind"})
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			default:
				for _, n := range names {
					fmt.Fprintln(g.stdout, n)
				}
				return nil
			}
		},
	}
	clusters.Flags().StringVarP(&output, "output", "o", "name", "output format: name or json")
	cmd.AddCommand(clusters)
	return cmd
}
