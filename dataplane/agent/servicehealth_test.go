package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
)

// get returns the status code and body of GET url.
func get(t *testing.T, url string) (int, []byte, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// A cloud load balancer probes healthCheckNodePort on every node: 200 with the local endpoint count
// where the Service has a Ready endpoint, 503 where it has none, nothing once the Service is gone.
func TestServiceHealthCheckAnswersAsKubeProxy(t *testing.T) {
	ready := true
	h := newServiceHealth("127.0.0.1", func() bool { return ready }, slog.New(slog.DiscardHandler))
	defer h.Close()
	port := uint16(testutil.FreePort(t, "127.0.0.1"))
	url := "http://127.0.0.1:" + strconv.Itoa(int(port)) + "/healthz"
	if err := h.Sync("shop/web", port, 2); err != nil {
		t.Fatal(err)
	}
	code, body, err := get(t, url)
	if err != nil || code != http.StatusOK {
		t.Fatalf("two local endpoints: %d %s %v, want 200", code, body, err)
	}
	var r serviceHealthReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if r.Service.Namespace != "shop" || r.Service.Name != "web" || r.LocalEndpoints != 2 || !r.ServiceProxyHealthy {
		t.Errorf("answer %+v", r)
	}
	if err := h.Sync("shop/web", port, 0); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, url); code != http.StatusServiceUnavailable {
		t.Errorf("no local endpoint: %d %s, want 503", code, body)
	}
	_ = h.Sync("shop/web", port, 1)
	ready = false
	if code, body, _ := get(t, url); code != http.StatusServiceUnavailable {
		t.Errorf("agent not ready: %d %s, want 503", code, body)
	}
	ready = true
	if err := h.Sync("shop/web", 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, url); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Service gone: %v, want connection refused", err)
	}
}

// kube-proxy's node health endpoint, which load balancers probe for externalTrafficPolicy Cluster.
func TestProxyHealthAnswersOnceSynced(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))
	a, err := New(Options{Config: &config.Config{ProxyHealthAddr: addr}, NodeName: "n1", Client: fake.NewClientset(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stop := a.serveProxyHealth(context.Background())
	defer stop()
	var code int
	for range 50 { // the listener starts in a goroutine
		if code, _, err = get(t, "http://"+addr+"/livez"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("before the first sync: /livez %d %v, want 503", code, err)
	}
	a.mu.Lock()
	a.status.Ready = true
	a.mu.Unlock()
	for _, path := range []string{"/healthz", "/livez"} {
		code, body, err := get(t, "http://"+addr+path)
		var doc map[string]any
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc["currentTime"] == nil {
			t.Errorf("%s: %d %s %v, want 200 with kube-proxy's document", path, code, body, err)
		}
	}
	if nodeEligible(&corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: toBeDeletedTaint}}}}) {
		t.Error("a node the autoscaler is removing is eligible")
	}
}

// Services labelled for another service proxy, and the EndpointSlices of headless Services, belong to
// someone else: kube-proxy does not see them, neither may the agent.
func TestInformersIgnoreServicesOfOtherProxies(t *testing.T) {
	meta := func(name string, l map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "default", Name: name, Labels: l}
	}
	kc := fake.NewClientset(
		&corev1.Service{ObjectMeta: meta("mine", nil)},
		&corev1.Service{ObjectMeta: meta("other", map[string]string{LabelServiceProxyName: "another-proxy"})},
		&discoveryv1.EndpointSlice{ObjectMeta: meta("mine-x", map[string]string{discoveryv1.LabelServiceName: "mine"})},
		&discoveryv1.EndpointSlice{ObjectMeta: meta("other-x", map[string]string{discoveryv1.LabelServiceName: "other", LabelServiceProxyName: "another-proxy"})},
		&discoveryv1.EndpointSlice{ObjectMeta: meta("headless-x", map[string]string{discoveryv1.LabelServiceName: "headless", LabelHeadless: ""})},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{LabelServiceProxyName: "x"}}},
	)
	f, nf := newInformerFactories(kc)
	svcs, sls, nodes := f.Core().V1().Services().Lister(), f.Discovery().V1().EndpointSlices().Lister(), nf.Core().V1().Nodes().Lister()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.Start(ctx.Done())
	nf.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	nf.WaitForCacheSync(ctx.Done())
	s, _ := svcs.List(labels.Everything())
	e, _ := sls.List(labels.Everything())
	n, _ := nodes.List(labels.Everything())
	if len(s) != 1 || s[0].Name != "mine" || len(e) != 1 || e[0].Name != "mine-x" {
		t.Errorf("services %d, slices %d: want only the default proxy's", len(s), len(e))
	}
	if len(n) != 1 {
		t.Errorf("nodes %d: the Node informer must not filter", len(n))
	}
}
