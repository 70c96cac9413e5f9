package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/provision/observe"
	"github.com/spf13/cobra"
)

func newInspectCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "List what the nodes' BPF maps hold, in terms of Services, pods and nodes",
		Long: `inspect reads the pinned BPF maps of each node through the Kubernetes API (it runs "kubedirect
agent dump" in the node's agent pod) and names every entry from the API server's objects: the Service
port of a frontend, the node of a backend or tunnel peer, the pod of an endpoint.`,
	}
	for _, table := range inspect.Tables {
		cmd.AddCommand(newInspectTableCommand(g, table))
	}
	return cmd
}

var inspectShort = map[string]string{
	"services":  "Frontends (ClusterIP, NodePort, external) and the backends each one picks from",
	"backends":  "Backend slots of every Service port, with the node each backend runs on",
	"tunnels":   "Remote pod CIDRs and the node the overlay sends them to",
	"endpoints": "This node's pods the datapath delivers to",
	"conntrack": "Tracked flows: client, frontend, chosen backend, tunnel peer, state and expiry",
	"affinity":  "ClientIP session affinity: which backend each client sticks to",
}

func newInspectTableCommand(g *globals, table string) *cobra.Command {
	t := &clusterTarget{}
	var output, service, ip string
	var nodes []string
	cmd := &cobra.Command{
		Use:   table + " [--node NODE]... [--service NS/NAME] [--ip IP] [-o table|json]",
		Short: inspectShort[table],
		Example: fmt.Sprintf(`  kubedirect inspect %s --name demo
  kubedirect inspect %s --name demo --node demo-worker --service default/web -o json`, table, table),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			f := inspect.Filter{Service: service}
			if service != "" && !strings.Contains(service, "/") {
				return fmt.Errorf("flag --service: %q is not namespace/name", service)
			}
			if ip != "" {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return fmt.Errorf("flag --ip: %w", err)
				}
				f.IP = a
			}
			ctx := cmd.Context()
			ac, name, err := connectTarget(ctx, g, t)
			if err != nil {
				return err
			}
			s, err := observe.Read(ctx, ac, nodes...)
			if err != nil {
				return fmt.Errorf("inspect %s of %q: %w", table, name, err)
			}
			if err := writeInspectTable(g, s, table, f, output); err != nil {
				return err
			}
			if err := s.Err(); err != nil {
				return fmt.Errorf("inspect %s of %q: %w", table, name, err)
			}
			return nil
		},
	}
	t.addFlags(cmd)
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "only these nodes (repeat or comma-separate)")
	cmd.Flags().StringVar(&service, "service", "", "only the entries of this Service (namespace/name)")
	cmd.Flags().StringVar(&ip, "ip", "", "only the entries that involve this address")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("node", t.completeNodes(g))
	_ = cmd.RegisterFlagCompletionFunc("service", t.completeServices(g))
	return cmd
}

// writeInspectTable prints one of inspect.Tables.
func writeInspectTable(g *globals, s *observe.Snapshot, table string, f inspect.Filter, output string) error {
	c, d := s.Cluster, s.Dumps
	var rows any
	var write func() error
	switch table {
	case "services":
		r := c.ServiceRows(d, f)
		rows, write = r, func() error { return inspect.WriteServices(g.stdout, r) }
	case "backends":
		r := c.BackendRows(d, f)
		rows, write = r, func() error { return inspect.WriteBackends(g.stdout, r) }
	case "tunnels":
		r := c.TunnelRows(d, f)
		rows, write = r, func() error { return inspect.WriteTunnels(g.stdout, r) }
	case "endpoints":
		r := c.EndpointRows(d, f)
		rows, write = r, func() error { return inspect.WriteEndpoints(g.stdout, r) }
	case "conntrack":
		r := c.ConntrackRows(d, f)
		rows, write = r, func() error { return inspect.WriteConntrack(g.stdout, r) }
	case "affinity":
		r := c.AffinityRows(d, f)
		rows, write = r, func() error { return inspect.WriteAffinity(g.stdout, r) }
	default:
		return fmt.Errorf("inspect: unknown table %q", table)
	}
	if output == "json" {
		return json.NewEncoder(g.stdout).Encode(rows)
	}
	return write()
}
