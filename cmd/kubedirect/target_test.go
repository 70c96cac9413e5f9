package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubedirect/kubedirect/provision/agentexec"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestTargetKubeconfigContextReachesThatCluster: with neither --name nor -f, the verbs reach the
// cluster of the kubeconfig context the user names, not the current one.
func TestTargetKubeconfigContextReachesThatCluster(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
current-context: a
clusters:
- {name: a, cluster: {server: "https://127.0.0.1:6443"}}
- {name: b, cluster: {server: "https://127.0.0.1:7443"}}
contexts:
- {name: a, context: {cluster: a, user: u}}
- {name: b, context: {cluster: b, user: u}}
users:
- {name: u, user: {token: x}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &globals{}
	for _, tc := range []struct{ context, name, host string }{{"", "a", "https://127.0.0.1:6443"}, {"b", "b", "https://127.0.0.1:7443"}} {
		tg := &clusterTarget{kubeconfig: kc, context: tc.context}
		rc, name, err := tg.restConfig(t.Context(), g)
		if err != nil {
			t.Fatal(err)
		}
		if name != tc.name || rc.Host != tc.host {
			t.Errorf("--context %q: cluster %q at %s, want %q at %s", tc.context, name, rc.Host, tc.name, tc.host)
		}
	}
}

// TestNodeAndServiceFlagsCompleteFromTheAPI: <TAB> after --node and --service offers the cluster's
// node names and namespace/name of its Services.
func TestNodeAndServiceFlagsCompleteFromTheAPI(t *testing.T) {
	cs := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "demo-worker"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "demo-control-plane"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"}},
	)
	old := connectTarget
	t.Cleanup(func() { connectTarget = old })
	connectTarget = func(context.Context, *globals, *clusterTarget) (*agentexec.Client, string, error) {
		return &agentexec.Client{Kube: cs}, "demo", nil
	}
	tg := &clusterTarget{}
	cmd := &cobra.Command{}
	cmd.SetContext(t.Context())
	nodes, _ := tg.completeNodes(&globals{})(cmd, nil, "demo-w")
	svcs, _ := tg.completeServices(&globals{})(cmd, nil, "def")
	if fmt.Sprint(nodes) != "[demo-worker]" || fmt.Sprint(svcs) != "[default/web]" {
		t.Fatalf("completions: nodes %v, services %v", nodes, svcs)
	}
}
