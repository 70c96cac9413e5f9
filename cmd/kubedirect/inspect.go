package main

import (
	"encoding/json"
	"fmt"
	"io"
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
	v := &viewFlags{}
	var service, ip string
	cmd := &cobra.Command{
		Use:   table + " [--node NODE]... [--service NS/NAME] [--ip IP] [-o table|json]",
		Short: inspectShort[table],
		Example: fmt.Sprintf(`  kubedirect inspect %s --name demo
  kubedirect inspect %s --name demo --node demo-worker --service default/web -o json`, table, table),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			ac, name, err := v.connect(cmd, g)
			if err != nil {
				return err
			}
			s, err := observe.Read(cmd.Context(), ac, v.nodes...)
			if err != nil {
				return fmt.Errorf("inspect %s of %q: %w", table, name, err)
			}
			if err := writeInspectTable(g, s, table, f, v.output); err != nil {
				return err
			}
			if err := s.Err(); err != nil {
				return fmt.Errorf("inspect %s of %q: %w", table, name, err)
			}
			return nil
		},
	}
	v.addFlags(cmd, g)
	cmd.Flags().StringVar(&service, "service", "", "only the entries of this Service (namespace/name)")
	cmd.Flags().StringVar(&ip, "ip", "", "only the entries that involve this address")
	_ = cmd.RegisterFlagCompletionFunc("service", v.completeServices(g))
	return cmd
}

// writeInspectTable prints one of inspect.Tables.
func writeInspectTable(g *globals, s *observe.Snapshot, table string, f inspect.Filter, output string) error {
	c, d := s.Cluster, s.Dumps
	switch table {
	case "services":
		return emit(g, output, c.ServiceRows(d, f), inspect.WriteServices)
	case "backends":
		return emit(g, output, c.BackendRows(d, f), inspect.WriteBackends)
	case "tunnels":
		return emit(g, output, c.TunnelRows(d, f), inspect.WriteTunnels)
	case "endpoints":
		return emit(g, output, c.EndpointRows(d, f), inspect.WriteEndpoints)
	case "conntrack":
		return emit(g, output, c.ConntrackRows(d, f), inspect.WriteConntrack)
	case "affinity":
		return emit(g, output, c.AffinityRows(d, f), inspect.WriteAffinity)
	}
	return fmt.Errorf("inspect: unknown table %q", table)
}

// emit prints rows as JSON or with their table writer.
func emit[T any](g *globals, output string, rows []T, table func(io.Writer, []T) error) error {
	if output == "json" {
		if rows == nil {
			rows = []T{}
		}
		return json.NewEncoder(g.stdout).Encode(rows)
	}
	return table(g.stdout, rows)
}
