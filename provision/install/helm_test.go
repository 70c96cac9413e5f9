package install

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubedirect/kubedirect/internal/testutil"
)

func daemonSet(gen, observed int64, desired, updated, ready int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: ReleaseName, Namespace: Namespace, Generation: gen},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: observed, DesiredNumberScheduled: desired,
			UpdatedNumberScheduled: updated, NumberReady: ready, NumberAvailable: ready},
	}
}

func TestDaemonSetRolledOut(t *testing.T) {
	for _, tc := range []struct {
		ds   *appsv1.DaemonSet
		want bool
	}{
		{daemonSet(2, 2, 3, 3, 3), true},
		{daemonSet(2, 1, 3, 3, 3), false}, // upgrade not yet seen
		{daemonSet(1, 1, 3, 2, 3), false}, // one node still on the old template
		{daemonSet(1, 1, 3, 3, 2), false}, // one agent not ready: every node needs one
		{daemonSet(1, 1, 0, 0, 0), false},
	} {
		if got, why := DaemonSetRolledOut(tc.ds); got != tc.want {
			t.Errorf("%+v: got %v (%s), want %v", tc.ds.Status, got, why, tc.want)
		}
	}
}

func TestWaitDaemonSet(t *testing.T) {
	cs := fake.NewClientset(daemonSet(1, 1, 3, 3, 3))
	if err := WaitDaemonSet(t.Context(), cs, Namespace, ReleaseName, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cs = fake.NewClientset(daemonSet(1, 1, 3, 3, 1))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := WaitDaemonSet(ctx, cs, Namespace, ReleaseName, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 pods ready") {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitDaemonSetNamesWhyPodsAreNotReady(t *testing.T) {
	ds := daemonSet(1, 1, 2, 2, 1)
	ds.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kubedirect"}}
	pod := func(name, node string, st corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app": "kubedirect"}},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{st}},
		}
	}
	cs := fake.NewClientset(ds,
		pod("kubedirect-a", "node-a", corev1.ContainerStatus{Name: "agent", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}),
		pod("kubedirect-b", "node-b", corev1.ContainerStatus{Name: "agent", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CreateContainerError", Message: "failed to generate spec"}}}),
	)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := WaitDaemonSet(ctx, cs, Namespace, ReleaseName, time.Millisecond)
	if err == nil {
		t.Fatal("no error although one agent is not ready")
	}
	testutil.WantContains(t, "error", err.Error(), "1 of 2 pods ready", "pod kubedirect-b on node-b, container agent: CreateContainerError: failed to generate spec")
	if strings.Contains(err.Error(), "kubedirect-a") {
		t.Errorf("error names the healthy pod:\n%v", err)
	}
}
