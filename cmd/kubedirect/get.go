package main

import (
	"encoding/json"
	"fmt"

	"github.com/kubedirect/kubedirect/provision/providers"
	"github.com/spf13/cobra"
)

func newGetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "get", Short: "List resources"}
	var output string
	clusters := &cobra.Command{
		Use:   "clusters",
		Short: "List the kubedirect clusters (on kind, and in the state store when one is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "name" && output != "json" {
				return fmt.Errorf("flag --output: unsupported value %q (want name or json)", output)
			}
			ps, err := providers.Configured(g.env(nil))
			if err != nil {
				return err
			}
			type row struct {
				Name     string `json:"name"`
				Provider string `json:"provider"`
			}
			rows := []row{}
			for _, p := range ps {
				names, err := p.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, n := range names {
					rows = append(rows, row{n, string(p.Name())})
				}
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			for _, r := range rows {
				fmt.Fprintln(g.stdout, r.Name)
			}
			return nil
		},
	}
	clusters.Flags().StringVarP(&output, "output", "o", "name", "output format: name or json")
	cmd.AddCommand(clusters)
	return cmd
}
