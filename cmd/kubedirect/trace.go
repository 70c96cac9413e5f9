package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kubedirect/kubedirect/dataplane/trace"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newTraceCommand(g *globals) *cobra.Command {
	t := &clusterTarget{}
	var node, from, to, iface, output string
	cmd := &cobra.Command{
		Use:   "trace --node NODE --from IP:PORT --to IP:PORT/tcp|udp",
		Short: "Show what a node's datapath would do with one packet, without sending it",
		Long: `trace runs the node's BPF programs (from-netdev, or from-container with --iface pod) on one
synthesized packet with BPF_PROG_TEST_RUN, inside the node's agent pod (reached through the Kubernetes
API), and prints the frontend matched, the backend chosen and its node, the NAT done, the tunnel peer or
redirect, and the verdict or drop reason. The programs run on copies of the node's maps: no packet is
sent and no conntrack entry or counter of the node changes. A flow the node already tracks is traced
as established (its next packet).

-o json prints one object:
  {"node", "program", "packet", "established", "frontend": {"addr", "port", "proto", "scope",
   "serviceID", "service"}, "backend", "backendNodeIP", "backendNode", "tunnelPeer", "redirectIfindex",
   "redirectInterface", "verdict", "dropReason", "counted": [...], "action", "output": {"src", "dst",
   "proto"}}`,
		Example: `  kubedirect trace --name demo --node demo-worker --from 203.0.113.7:40000 --to 172.18.0.3:30080/tcp`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("flag --output: unsupported value %q (want table or json)", output)
			}
			if _, err := trace.ParseRequest(from, to, iface); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, _, err := connectTarget(ctx, g, t)
			if err != nil {
				return err
			}
			agents, err := c.Agents(ctx, node)
			if err != nil {
				return err
			}
			r := c.Output(ctx, agents[0], agentexec.AgentCommand("trace", "--from", from, "--to", to, "--iface", iface), nil)
			if r.Err != nil {
				return fmt.Errorf("%w: %s", r.Err, strings.TrimSpace(string(r.Stderr)))
			}
			var res trace.Result
			if err := json.Unmarshal(r.Stdout, &res); err != nil {
				return fmt.Errorf("trace on node %s: decode result: %w", node, err)
			}
			svcs, err := c.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list services: %w", err)
			}
			nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			res.Name(node, svcs.Items, nodes.Items)
			if output == "json" {
				return json.NewEncoder(g.stdout).Encode(res)
			}
			return printTrace(g.stdout, res)
		},
	}
	t.addFlags(cmd)
	cmd.Flags().StringVar(&node, "node", "", "node whose datapath runs the packet (required)")
	cmd.Flags().StringVar(&from, "from", "", "source IP:PORT of the packet (required)")
	cmd.Flags().StringVar(&to, "to", "", "destination IP:PORT/tcp|udp of the packet (required; tcp when left out)")
	cmd.Flags().StringVar(&iface, "iface", string(trace.Netdev), "where the packet enters: netdev (the node's NIC) or pod (a local pod's veth; --from is the pod)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	for _, f := range []string{"node", "from", "to"} {
		_ = cmd.MarkFlagRequired(f)
	}
	_ = cmd.RegisterFlagCompletionFunc("node", t.completeNodes(g))
	return cmd
}

// printTrace prints r as a two-column table, one line per finding.
func printTrace(w io.Writer, r trace.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	flow := "new flow"
	if r.Established {
		flow = "established flow"
	}
	line("node", "%s", r.Node)
	line("packet", "%s (%s, %s)", r.Packet, r.Program, flow)
	if f := r.Frontend; f != nil {
		svc := f.Service
		if svc == "" {
			svc = "?"
		}
		line("frontend", "%s %s (service %s, id %d)", f, f.Scope, svc, f.ServiceID)
	} else {
		line("frontend", "none (not a service frontend on this node)")
	}
	if r.Backend != "" {
		where := r.BackendNodeName
		if r.BackendNodeIP != "" {
			where += " (" + r.BackendNodeIP + ")"
		}
		line("backend", "%s on node %s", r.Backend, strings.TrimSpace(where))
	}
	switch {
	case r.TunnelPeer != "":
		line("tunnel peer", "%s (redirect to %s)", r.TunnelPeer, ifName(r))
	case r.RedirectIfindex != 0:
		line("redirect", "%s", ifName(r))
	}
	v := r.Verdict
	if r.DropReason != "" {
		v += " (" + r.DropReason + ")"
	}
	line("verdict", "%s, tc action %s", v, r.Action)
	if o := r.Output; o != nil {
		line("output", "%s -> %s %s", o.Src, o.Dst, o.Proto)
	}
	return tw.Flush()
}

func ifName(r trace.Result) string {
	if r.RedirectInterface != "" {
		return r.RedirectInterface
	}
	return fmt.Sprintf("ifindex %d", r.RedirectIfindex)
}
