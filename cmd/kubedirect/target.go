package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// clusterTarget is how the verbs that look inside a running cluster's dataplane (status, inspect,
// verify, monitor, trace) name it: --name or -f as validate does, or else a kubeconfig (--kubeconfig,
// --context; default: kubectl's current context), for any cluster running the kubedirect chart.
type clusterTarget struct {
	ref        clusterRef
	kubeconfig string
	context    string
}

func (t *clusterTarget) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.ref.name, "name", "", "cluster name (kind, or aws with --state-store)")
	cmd.Flags().StringVarP(&t.ref.file, "file", "f", "", `cluster spec file ("-" reads standard input)`)
	cmd.Flags().StringVar(&t.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster when neither --name nor -f is given (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVar(&t.context, "context", "", "kubeconfig context (default: the current context)")
	cmd.MarkFlagsMutuallyExclusive("name", "file", "kubeconfig")
	cmd.MarkFlagsMutuallyExclusive("name", "file", "context")
}

// connectTarget reaches the agents of the cluster t names; tests replace it. It returns the client and
// the cluster's name for messages.
var connectTarget = func(ctx context.Context, g *globals, t *clusterTarget) (*agentexec.Client, string, error) {
	rc, name, err := t.restConfig(ctx, g)
	if err != nil {
		return nil, name, err
	}
	c, err := agentexec.New(rc)
	return c, name, err
}

// restConfig is the admin connection to the cluster t names.
func (t *clusterTarget) restConfig(ctx context.Context, g *globals) (*rest.Config, string, error) {
	if t.ref.name == "" && t.ref.file == "" {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = t.kubeconfig
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: t.context})
		raw, err := cc.RawConfig()
		if err != nil {
			return nil, "", fmt.Errorf("load kubeconfig: %w", err)
		}
		name := t.context
		if name == "" {
			name = raw.CurrentContext
		}
		rc, err := cc.ClientConfig()
		if err != nil {
			return nil, name, fmt.Errorf("kubeconfig context %q: %w", name, err)
		}
		return rc, name, nil
	}
	p, c, err := t.ref.resolve(ctx, g, nil)
	name := t.ref.clusterName(c)
	if err != nil {
		return nil, name, err
	}
	ok, err := p.Exists(ctx, c)
	if err != nil {
		return nil, name, err
	}
	if !ok {
		return nil, name, fmt.Errorf("%s cluster %q: %w", p.Name(), name, provision.ErrNotFound)
	}
	kc, err := p.Kubeconfig(ctx, c)
	if err != nil {
		return nil, name, fmt.Errorf("kubeconfig of %q: %w", name, err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, name, fmt.Errorf("kubeconfig of %q: %w", name, err)
	}
	return rc, name, nil
}

// completeNodes completes --node with the names of the cluster's nodes (from the API server).
func (t *clusterTarget) completeNodes(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, _, err := connectTarget(cmd.Context(), g, t)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		nodes, err := c.Kube.CoreV1().Nodes().List(cmd.Context(), metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, n := range nodes.Items {
			if strings.HasPrefix(n.Name, prefix) {
				out = append(out, n.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeServices completes --service with the cluster's Services as namespace/name.
func (t *clusterTarget) completeServices(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, _, err := connectTarget(cmd.Context(), g, t)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		svcs, err := c.Kube.CoreV1().Services("").List(cmd.Context(), metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, s := range svcs.Items {
			if n := s.Namespace + "/" + s.Name; strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// viewFlags are the flags of the verbs that read the nodes' datapaths: which cluster, --node and -o.
type viewFlags struct {
	clusterTarget
	nodes  []string
	output string
}

func (v *viewFlags) addFlags(cmd *cobra.Command, g *globals) {
	v.clusterTarget.addFlags(cmd)
	cmd.Flags().StringSliceVar(&v.nodes, "node", nil, "only these nodes (repeat or comma-separate)")
	_ = cmd.RegisterFlagCompletionFunc("node", v.completeNodes(g))
	cmd.Flags().StringVarP(&v.output, "output", "o", "table", "output format: table or json")
}

// connect checks -o and reaches the cluster's agents.
func (v *viewFlags) connect(cmd *cobra.Command, g *globals) (*agentexec.Client, string, error) {
	if v.output != "table" && v.output != "json" {
		return nil, "", fmt.Errorf("flag --output: unsupported value %q (want table or json)", v.output)
	}
	return connectTarget(cmd.Context(), g, &v.clusterTarget)
}
