package agentexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	utilexec "k8s.io/client-go/util/exec"
)

func agentPod(name, node string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{
			"app.kubernetes.io/name": "kubedirect", "app.kubernetes.io/component": "agent"}},
		Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: st}}},
	}
}

// TestAgentsPicksTheReadyPodOfEachNode: during a rollout a node briefly runs two agent pods; the CLI
// talks to the Ready one, and a pod of another app on the node is never chosen.
func TestAgentsPicksTheReadyPodOfEachNode(t *testing.T) {
	other := agentPod("web", "w1", corev1.PodRunning, true)
	other.Labels = map[string]string{"app": "web"}
	cs := fake.NewClientset(
		agentPod("kd-old", "w1", corev1.PodRunning, false),
		agentPod("kd-new", "w1", corev1.PodRunning, true),
		agentPod("kd-cp", "cp", corev1.PodRunning, true),
		other,
	)
	c := &Client{Kube: cs}
	got, err := c.Agents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []Agent{{Node: "cp", Pod: "kd-cp", Namespace: Namespace, Ready: true}, {Node: "w1", Pod: "kd-new", Namespace: Namespace, Ready: true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("agents %v, want %v", got, want)
	}
}

// TestAgentsNamesEveryNodeWithoutAnAgent: --node for a node without a running agent says which node
// and why, and the nodes that have one are still returned.
func TestAgentsNamesEveryNodeWithoutAnAgent(t *testing.T) {
	cs := fake.NewClientset(
		agentPod("kd-a", "a", corev1.PodRunning, true),
		agentPod("kd-b", "b", corev1.PodPending, false),
	)
	c := &Client{Kube: cs}
	got, err := c.Agents(t.Context(), "a", "b", "c", "a")
	if !errors.Is(err, ErrNoAgent) {
		t.Fatalf("err %v, want ErrNoAgent", err)
	}
	for _, want := range []string{"node b: ", "pod kd-b is Pending", "node c: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(got) != 1 || got[0].Pod != "kd-a" {
		t.Fatalf("agents %v, want only kd-a", got)
	}
}

// TestEachBoundsParallelismAndNamesFailedNodes: no more than the limit run at once, every node is
// visited, and the joined error names each node that failed.
func TestEachBoundsParallelismAndNamesFailedNodes(t *testing.T) {
	var agents []Agent
	for i := range 10 {
		agents = append(agents, Agent{Node: fmt.Sprintf("n%d", i)})
	}
	var running, most, visited atomic.Int32
	release, arrived := make(chan struct{}), make(chan struct{}, 10)
	go func() {
		// Let the workers pile up against the bound before any finishes.
		for range 3 {
			<-arrived
		}
		close(release)
	}()
	err := Each(t.Context(), agents, 3, func(_ context.Context, _ int, a Agent) error {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		visited.Add(1)
		arrived <- struct{}{}
		<-release
		running.Add(-1)
		if a.Node == "n4" || a.Node == "n7" {
			return fmt.Errorf("node %s: boom", a.Node)
		}
		return nil
	})
	if most.Load() > 3 {
		t.Errorf("%d ran at once, limit 3", most.Load())
	}
	if visited.Load() != 10 {
		t.Errorf("visited %d nodes, want 10", visited.Load())
	}
	if err == nil || !strings.Contains(err.Error(), "node n4: boom") || !strings.Contains(err.Error(), "node n7: boom") {
		t.Fatalf("err %v, want n4 and n7 named", err)
	}
}

// TestHoldStdinEndsTheInPodCommandWithTheCLI: the in-pod side of a long-running command stops when the
// CLI's context ends (its stdin reaches EOF), not before.
func TestHoldStdinEndsTheInPodCommandWithTheCLI(t *testing.T) {
	cli, stop := context.WithCancel(t.Context())
	stdin := HoldStdin(cli)
	pod, cancel := UntilStdinCloses(context.Background(), stdin)
	defer cancel()
	select {
	case <-pod.Done():
		t.Fatal("in-pod context ended while the CLI runs")
	default:
	}
	stop()
	<-pod.Done()
}

// TestExitCodeReadsTheInPodCommandsStatus: status 2 of `agent dump` (for example) reaches the CLI; a
// failed exec is not mistaken for a command's status.
func TestExitCodeReadsTheInPodCommandsStatus(t *testing.T) {
	err := fmt.Errorf("node a: exec: %w", utilexec.CodeExitError{Err: errors.New("command terminated with exit code 2"), Code: 2})
	if got := ExitCode(err); got != 2 {
		t.Errorf("ExitCode = %d, want 2", got)
	}
	if got := ExitCode(io.ErrUnexpectedEOF); got != -1 {
		t.Errorf("ExitCode(non-exit error) = %d, want -1", got)
	}
}
