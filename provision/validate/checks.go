package validate

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/provision/agentexec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Labels the checks look for.
const (
	// AgentSelector selects the kubedirect agent's pods and DaemonSet (the chart's labels).
	AgentSelector = agentexec.Selector
	// KubeProxyName is kube-proxy's DaemonSet, and KubeProxyLabel its pods' label, in kube-system.
	KubeProxyName  = "kube-proxy"
	KubeProxyLabel = "k8s-app=kube-proxy"
)

// CheckNodes requires every node to be Ready; no node at all fails.
func CheckNodes(nodes []corev1.Node) []Check {
	if len(nodes) == 0 {
		return []Check{{Name: "node ready", Target: "cluster", Result: Fail, Detail: "no nodes"}}
	}
	var out []Check
	for _, n := range sortedNodes(nodes) {
		c := Check{Name: "node ready", Target: n.Name, Result: Fail, Detail: "no Ready condition"}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					c.Result, c.Detail = Pass, ""
				} else {
					c.Detail = fmt.Sprintf("Ready=%s: %s %s", cond.Status, cond.Reason, cond.Message)
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// CheckSystemPods requires every kube-system pod to be Ready (or to have completed).
func CheckSystemPods(pods []corev1.Pod) []Check {
	var out []Check
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for _, p := range pods {
		c := Check{Name: "kube-system pod ready", Target: p.Name, Result: Pass}
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
		case !agentexec.PodReady(&p):
			c.Result, c.Detail = Fail, podProblem(&p)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		out = append(out, Check{Name: "kube-system pod ready", Target: "kube-system", Result: Fail, Detail: "no pods in kube-system"})
	}
	return out
}

// CheckKubeProxy requires kube-proxy to be absent: neither its DaemonSet nor any of its pods.
func CheckKubeProxy(daemonSets []appsv1.DaemonSet, pods []corev1.Pod) Check {
	c := Check{Name: "kube-proxy absent", Target: "kube-system", Result: Pass}
	var found []string
	for _, ds := range daemonSets {
		if ds.Name == KubeProxyName {
			found = append(found, "daemonset/"+ds.Name)
		}
	}
	for _, p := range pods {
		if p.Labels["k8s-app"] == "kube-proxy" || strings.HasPrefix(p.Name, "kube-proxy-") {
			found = append(found, "pod/"+p.Name)
		}
	}
	if len(found) > 0 {
		c.Result, c.Detail = Fail, "kube-proxy is running: "+strings.Join(found, ", ")
	}
	return c
}

// AgentStatus is what an agent's /status said, or why it could not be read.
type AgentStatus struct {
	// Body is the /status response.
	Body []byte
	// Err is the error reading it.
	Err error
}

// CheckAgents requires, on every node, a Ready agent pod whose /status reports programmed maps.
// agentPods are the pods AgentSelector selects; statuses are keyed by pod name.
func CheckAgents(nodes []corev1.Node, agentPods []corev1.Pod, statuses map[string]AgentStatus) []Check {
	byNode := agentexec.ByNode(agentPods)
	var out []Check
	for _, n := range sortedNodes(nodes) {
		p, ok := byNode[n.Name]
		if !ok {
			out = append(out, Check{Name: "agent ready", Target: n.Name, Result: Fail, Detail: "no kubedirect agent pod on this node"})
			continue
		}
		if !agentexec.PodReady(p) {
			out = append(out, Check{Name: "agent ready", Target: n.Name, Result: Fail, Detail: p.Name + ": " + podProblem(p)})
			continue
		}
		out = append(out, Check{Name: "agent ready", Target: n.Name, Result: Pass, Detail: p.Name})
		st, ok := statuses[p.Name]
		c := Check{Name: "agent maps programmed", Target: n.Name}
		switch {
		case !ok:
			c.Result, c.Detail = Fail, "status not read"
		case st.Err != nil:
			c.Result, c.Detail = Fail, "read /status: "+st.Err.Error()
		default:
			ok, detail := MapsProgrammed(st.Body)
			c.Result, c.Detail = Fail, detail
			if ok {
				c.Result = Pass
			}
		}
		out = append(out, c)
	}
	return out
}

// MapsProgrammed decides from an agent's /status JSON whether its BPF maps are programmed: the agent
// reports ready, and its services map holds frontends with backends (every cluster has the kubernetes
// Service, whose backend is the API server). Services the agent skipped are shown, not failed.
func MapsProgrammed(status []byte) (bool, string) {
	var st agentstatus.Status
	if err := json.Unmarshal(status, &st); err != nil {
		return false, "status is not the agent's JSON: " + err.Error()
	}
	summary := fmt.Sprintf("services=%d frontends=%d backends=%d tunnels=%d endpoints=%d", st.Services, st.Frontends, st.Backends, st.Tunnels, st.Endpoints)
	if len(st.Skipped) > 0 {
		summary += fmt.Sprintf(" skipped=%d (%s)", len(st.Skipped), strings.Join(st.Skipped, "; "))
	}
	switch {
	case !st.Ready:
		return false, "agent reports ready=false: " + summary
	case st.Services == 0 || st.Frontends == 0:
		return false, "no service frontends programmed: " + summary
	case st.Backends == 0:
		return false, "no service backends programmed: " + summary
	}
	return true, summary
}

// podProblem says why a pod is not ready, from its container states.
func podProblem(p *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			return fmt.Sprintf("container %s waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Sprintf("container %s terminated: %s (exit %d)", cs.Name, t.Reason, t.ExitCode)
		}
		if !cs.Ready && cs.State.Running != nil && cs.Name != "" && !isInit(p, cs.Name) {
			return fmt.Sprintf("container %s running, not ready", cs.Name)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return fmt.Sprintf("%s: %s", c.Type, c.Message)
		}
	}
	return "phase " + string(p.Status.Phase) + ", not ready"
}

func isInit(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func sortedNodes(nodes []corev1.Node) []corev1.Node {
	out := append([]corev1.Node(nil), nodes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NodeIP is the node's InternalIP (IPv4 first), else its first address.
func NodeIP(n *corev1.Node) string {
	var first string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && !strings.Contains(a.Address, ":") {
			return a.Address
		}
		if first == "" && (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) {
			first = a.Address
		}
	}
	return first
}
