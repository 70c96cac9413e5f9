package install

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
)

// CurrentContext is the name of a kubeconfig's current context.
func CurrentContext(kubeconfig []byte) (string, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("read kubeconfig: %w", err)
	}
	return cfg.CurrentContext, nil
}

// NodesReady reports whether want nodes are registered and all Ready; if not, it says which are
// missing or not Ready (and why, from the Ready condition), one problem per entry.
func NodesReady(nodes []corev1.Node, want int) (bool, []string) {
	var problems []string
	sorted := append([]corev1.Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, n := range sorted {
		ready, why := false, "no Ready condition yet"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ready = c.Status == corev1.ConditionTrue
				why = strings.TrimSpace(c.Reason + ": " + c.Message)
			}
		}
		if !ready {
			problems = append(problems, fmt.Sprintf("node %s is not Ready (%s)", n.Name, strings.Trim(why, ": ")))
		}
	}
	if len(nodes) < want {
		problems = append(problems, fmt.Sprintf("%d of %d nodes have registered", len(nodes), want))
	}
	return len(problems) == 0, problems
}

// WaitNodesAndAgents waits up to timeout for want nodes to be registered and Ready and for the agent
// DaemonSet to be ready on each. On failure the error names every node that is missing or not Ready,
// followed by hint(node) (how to read that node's bootstrap log), and the agents' problems.
func WaitNodesAndAgents(ctx context.Context, kubeconfig []byte, want int, timeout time.Duration, hint func(node string) string) error {
	cs, wctx, cancel, err := clientWithin(ctx, kubeconfig, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	var problems []string
	var missing []corev1.Node
	err = wait.PollUntilContextCancel(wctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			if ctx.Err() == nil {
				problems = []string{"list nodes: " + err.Error()}
			}
			return false, nil
		}
		var ok bool
		ok, problems = NodesReady(list.Items, want)
		missing = missing[:0]
		for _, n := range list.Items {
			if r, _ := NodesReady([]corev1.Node{n}, 1); !r {
				missing = append(missing, n)
			}
		}
		return ok, nil
	})
	if err != nil {
		var b strings.Builder
		fmt.Fprintf(&b, "wait for nodes: %s", strings.Join(problems, "; "))
		if hint != nil {
			for _, n := range missing {
				fmt.Fprintf(&b, "\n  %s: %s", n.Name, hint(n.Name))
			}
			if len(missing) == 0 {
				fmt.Fprintf(&b, "\n  %s", hint("a node that did not register"))
			}
		}
		return fmt.Errorf("%s: %w", b.String(), err)
	}
	return WaitDaemonSet(wctx, cs, Namespace, ReleaseName, 2*time.Second)
}
