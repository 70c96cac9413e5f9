package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kubedirect/kubedirect/dataplane/inspect"
	dpobserve "github.com/kubedirect/kubedirect/provision/observe"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/internal/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const clientIP = "172.18.0.1" // the host, as the nodes see it over the kind bridge

var nodeNames = []string{"demo-control-plane", "demo-worker", "demo-worker2"}

func nodeIPOf(i int) string { return "172.18.0." + strconv.Itoa(i+2) }

func readyCondition() []corev1.PodCondition {
	return []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
}

// cluster is a healthy kubedirect cluster as the fake API server holds it.
func cluster() []runtime.Object {
	var objs []runtime.Object
	for i, name := range nodeNames {
		objs = append(objs, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIPOf(i)}},
			},
		})
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "kubedirect-" + strconv.Itoa(i), Namespace: "kube-system", Labels: map[string]string{
				"app.kubernetes.io/name": "kubedirect", "app.kubernetes.io/component": "agent", "app.kubernetes.io/instance": "kubedirect"}},
			Spec:   corev1.PodSpec{NodeName: name, HostNetwork: true},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition(), PodIP: nodeIPOf(i)},
		})
	}
	objs = append(objs,
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "coredns-1", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition()},
		},
		&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "kubedirect", Namespace: "kube-system", Labels: map[string]string{
				"app.kubernetes.io/name": "kubedirect", "app.kubernetes.io/component": "agent"}},
			Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "agent", Image: "kubedirect.local/kubedirect:bin-0123", ImagePullPolicy: corev1.PullNever}}}}},
		},
	)
	return objs
}

// fakeCluster is a fake API server that schedules and readies pods and allocates NodePorts, and a fake
// dataplane seen through a Prober.
type fakeCluster struct {
	cs *fake.Clientset
	// snatRemote makes forwarded NodePort traffic arrive with the ingress node's address, as kube-proxy
	// does with externalTrafficPolicy Cluster.
	snatRemote bool
	// localAnswersRemote makes policy Local forward to a remote backend instead of dropping.
	localAnswersRemote bool
	calls              atomic.Int32
	onCall             func()
}

func newFakeCluster(objs ...runtime.Object) *fakeCluster {
	f := &fakeCluster{cs: fake.NewClientset(objs...)}
	next := int32(30000)
	f.cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		pod.Spec.NodeName = pod.Spec.NodeSelector[corev1.LabelHostname]
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition()}
		return false, nil, nil // the tracker stores the object changed in place
	})
	f.cs.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		svc := a.(k8stesting.CreateAction).GetObject().(*corev1.Service)
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = next
			next++
		}
		return false, nil, nil
	})
	return f
}

func (f *fakeCluster) nodeOf(ip string) (string, bool) {
	for i, n := range nodeNames {
		if nodeIPOf(i) == ip {
			return n, true
		}
	}
	return "", false
}

// Probe answers like kubedirect's dataplane: the client address preserved, Local without a local
// backend dropped.
func (f *fakeCluster) Probe(ctx context.Context, proto corev1.Protocol, addr string) (echo.Reply, error) {
	f.calls.Add(1)
	if f.onCall != nil {
		f.onCall()
	}
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	ingress, ok := f.nodeOf(host)
	if !ok {
		return echo.Reply{}, fmt.Errorf("no route to %s", host)
	}
	if port == DefaultBaselineHTTPPort || port == DefaultBaselineUDPPort {
		return echo.Reply{Source: clientIP + ":40000", Node: ingress, Pod: "baseline"}, nil
	}
	svcs, err := f.cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return echo.Reply{}, err
	}
	for _, svc := range svcs.Items {
		for _, p := range svc.Spec.Ports {
			if p.NodePort != int32(port) || p.Protocol != proto {
				continue
			}
			label := svc.Spec.Selector["kubedirect.io/probe-node"]
			i, _ := strconv.Atoi(strings.TrimPrefix(label, "n"))
			backend := nodeNames[i]
			src := clientIP
			if backend != ingress {
				if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !f.localAnswersRemote {
					return echo.Reply{}, errors.New("i/o timeout")
				}
				if f.snatRemote {
					src = host
				}
			}
			return echo.Reply{Source: src + ":41000", Node: backend, Pod: "echo-" + label}, nil
		}
	}
	return echo.Reply{}, errors.New("connection refused")
}

func okStatus(context.Context, *corev1.Pod) ([]byte, error) {
	return []byte(`{"node":"n","ready":true,"services":2,"frontends":4,"backends":3,"tunnels":2,"endpoints":2,"conntrack":0,"syncs":3,"mapWrites":12,"syncErrors":0}`), nil
}

func (f *fakeCluster) validator() *Validator {
	return &Validator{Client: f.cs, Cluster: "demo", Prober: f, Status: okStatus,
		PollInterval: time.Millisecond, RowTimeout: 50 * time.Millisecond, CallTimeout: 10 * time.Millisecond}
}

func (f *fakeCluster) probeNamespaces(t *testing.T) []string {
	t.Helper()
	list, err := f.cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range list.Items {
		if strings.HasPrefix(ns.Name, NamespacePrefix) {
			out = append(out, ns.Name)
		}
	}
	return out
}

func TestRunPassesOnWorkingCluster(t *testing.T) {
	f := newFakeCluster(cluster()...)
	rep, err := f.validator().Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_ = rep.WriteTable(&buf)
	if !rep.Passed {
		t.Fatalf("report did not pass:\n%s", buf.String())
	}
	if len(rep.Matrix) != 3*2*2*2 {
		t.Errorf("matrix has %d rows, want 24", len(rep.Matrix))
	}
	for _, r := range rep.Matrix {
		want := clientIP
		if r.Policy == "Local" && r.Backend == Remote {
			want = NoReply
		}
		if r.Seen != want || r.Expected != want {
			t.Errorf("row %+v: seen/expected want %s", r, want)
		}
	}
	if ns := f.probeNamespaces(t); len(ns) != 0 {
		t.Errorf("probe namespaces left behind: %v", ns)
	}
	out := buf.String()
	testutil.WantContains(t, "table", out,
		"NODE", "BACKEND", "POLICY", "PROTO", "SEEN", "EXPECTED", "RESULT",
		"remote (demo-worker2)", "172.18.0.1  172.18.0.1  PASS", "validation PASSED",
	)
}

// TestMisbehavingDataplaneFailsItsRows: a dataplane that breaks a Service's semantics must FAIL exactly
// the matrix rows it breaks, saying why, and pass the others. kube-proxy-like SNAT on forwarded NodePort
// traffic breaks the remote rows of policy Cluster (the backend saw the node's address); forwarding
// policy Local to another node breaks the remote rows of policy Local (they must time out).
func TestMisbehavingDataplaneFailsItsRows(t *testing.T) {
	for _, tc := range []struct {
		name      string
		misbehave func(*fakeCluster)
		policy    string
		detail    func(Row) string
	}{
		{"snat", func(f *fakeCluster) { f.snatRemote = true }, "Cluster",
			func(r Row) string { return "source NATed to node " + r.Node }},
		{"local forwards", func(f *fakeCluster) { f.localAnswersRemote = true }, "Local",
			func(Row) string { return "though externalTrafficPolicy Local has no backend on this node" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCluster(cluster()...)
			tc.misbehave(f)
			rep, err := f.validator().Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Passed {
				t.Fatal("report passed")
			}
			failed := 0
			for _, r := range rep.Matrix {
				if r.Backend == Remote && r.Policy == tc.policy {
					if r.Result != Fail || !strings.Contains(r.Detail, tc.detail(r)) {
						t.Errorf("row %+v should fail with %q", r, tc.detail(r))
					}
					failed++
				} else if r.Result != Pass {
					t.Errorf("row %+v should pass", r)
				}
			}
			if failed != 6 {
				t.Errorf("%d failing rows, want 6", failed)
			}
			if ns := f.probeNamespaces(t); len(ns) != 0 {
				t.Errorf("probe namespace not removed after a failure: %v", ns)
			}
		})
	}
}

func without(objs []runtime.Object, drop func(runtime.Object) bool) []runtime.Object {
	var out []runtime.Object
	for _, o := range objs {
		if !drop(o) {
			out = append(out, o)
		}
	}
	return out
}

func checkResult(rep *Report, name, target string) (Check, bool) {
	for _, c := range rep.Checks {
		if c.Name == name && c.Target == target {
			return c, true
		}
	}
	return Check{}, false
}

// runFailing runs v, which must fail its check name on target with a detail that says each of wants.
func runFailing(t *testing.T, v *Validator, name, target string, wants ...string) *Report {
	t.Helper()
	rep, err := v.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, ok := checkResult(rep, name, target)
	if rep.Passed || !ok || c.Result != Fail {
		t.Fatalf("passed=%v check %q on %s=%+v, want it failed", rep.Passed, name, target, c)
	}
	testutil.WantContains(t, "the check's detail", c.Detail, wants...)
	return rep
}

func TestMissingAgentOnNodeFails(t *testing.T) {
	objs := without(cluster(), func(o runtime.Object) bool {
		p, ok := o.(*corev1.Pod)
		return ok && p.Spec.NodeName == "demo-worker2" && p.Namespace == "kube-system"
	})
	f := newFakeCluster(objs...)
	rep := runFailing(t, f.validator(), "agent ready", "demo-worker2", "no kubedirect agent pod")
	if len(rep.Matrix) != 0 || f.calls.Load() != 0 {
		t.Errorf("the proof ran on a broken cluster")
	}
	if s, _ := checkResult(rep, "source-IP proof", "cluster"); s.Result != Skip {
		t.Errorf("proof not marked skipped: %+v", s)
	}
}

func TestAgentWithoutMapsFails(t *testing.T) {
	f := newFakeCluster(cluster()...)
	v := f.validator()
	v.Status = func(_ context.Context, p *corev1.Pod) ([]byte, error) {
		if p.Spec.NodeName == "demo-worker" {
			return []byte(`{"ready":true,"services":0,"frontends":0,"backends":0}`), nil
		}
		return okStatus(t.Context(), p)
	}
	runFailing(t, v, "agent maps programmed", "demo-worker")
}

func TestKubeProxyPresentFails(t *testing.T) {
	objs := append(cluster(),
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy-abcde", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-proxy"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition()}},
	)
	runFailing(t, newFakeCluster(objs...).validator(), "kube-proxy absent", "kube-system", "daemonset/kube-proxy", "pod/kube-proxy-abcde")
}

func TestNotReadyNodeFails(t *testing.T) {
	objs := cluster()
	objs[0].(*corev1.Node).Status.Conditions[0] = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "cni plugin not initialized"}
	runFailing(t, newFakeCluster(objs...).validator(), "node ready", nodeNames[0], "cni plugin not initialized")
}

// TestNamespaceRemovedOnCancel: Ctrl-C in the middle of the proof still deletes the probe namespace.
func TestNamespaceRemovedOnCancel(t *testing.T) {
	f := newFakeCluster(cluster()...)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.onCall = cancel
	_, err := f.validator().Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ns := f.probeNamespaces(t); len(ns) != 0 {
		t.Errorf("probe namespace left after cancel: %v", ns)
	}
}

// TestRunWithWaitRetries: an agent whose maps are not programmed at first passes on a later attempt.
func TestRunWithWaitRetries(t *testing.T) {
	f := newFakeCluster(cluster()...)
	v := f.validator()
	var attempts atomic.Int32
	v.Status = func(ctx context.Context, p *corev1.Pod) ([]byte, error) {
		if attempts.Load() < 2 {
			return nil, errors.New("connection refused")
		}
		return okStatus(ctx, p)
	}
	retries := 0
	rep, err := v.RunWithWait(t.Context(), 5*time.Second, time.Millisecond, func(*Report, error) { retries++; attempts.Add(1) })
	if err != nil || !rep.Passed || retries != 2 {
		t.Fatalf("passed=%v err=%v retries=%d", rep != nil && rep.Passed, err, retries)
	}
	// Without time to wait, one failed attempt is the answer.
	attempts.Store(0)
	rep, err = v.RunWithWait(t.Context(), 0, time.Millisecond, nil)
	if err != nil || rep.Passed {
		t.Fatalf("wait 0: passed=%v err=%v", rep.Passed, err)
	}
}

func TestJudge(t *testing.T) {
	a := ProbeNode{Name: "a", IP: "10.0.0.1"}
	b := ProbeNode{Name: "b", IP: "10.0.0.2"}
	nodeIPs := map[string]string{a.IP: "a", b.IP: "b"}
	remote := Case{Ingress: a, Backend: b, Placement: Remote, Policy: corev1.ServiceExternalTrafficPolicyCluster, Protocol: corev1.ProtocolTCP}
	remoteLocal := remote
	remoteLocal.Policy = corev1.ServiceExternalTrafficPolicyLocal
	for _, tc := range []struct {
		name     string
		obs      Observation
		expected string
		want     Result
		detail   string
	}{
		{"client seen", Observation{Case: remote, Reply: echo.Reply{Source: "192.0.2.9:5000", Node: "b"}}, "192.0.2.9", Pass, ""},
		{"ingress node IP seen", Observation{Case: remote, Reply: echo.Reply{Source: "10.0.0.1:5000", Node: "b"}}, "192.0.2.9", Fail, "source NATed to node a"},
		{"backend node IP seen", Observation{Case: remote, Reply: echo.Reply{Source: "10.0.0.2:5000", Node: "b"}}, "192.0.2.9", Fail, "source NATed to node b"},
		{"other address seen", Observation{Case: remote, Reply: echo.Reply{Source: "10.244.1.1:5000", Node: "b"}}, "192.0.2.9", Fail, "another source"},
		{"wrong backend", Observation{Case: remote, Reply: echo.Reply{Source: "192.0.2.9:5000", Node: "a"}}, "192.0.2.9", Fail, "answered from node a"},
		{"no reply", Observation{Case: remote, Err: errors.New("i/o timeout")}, "192.0.2.9", Fail, "i/o timeout"},
		{"no baseline", Observation{Case: remote, Reply: echo.Reply{Source: "192.0.2.9:5000", Node: "b"}}, "", Fail, "no baseline"},
		{"local policy drops", Observation{Case: remoteLocal, Err: errors.New("i/o timeout")}, "192.0.2.9", Pass, ""},
		{"local policy forwards", Observation{Case: remoteLocal, Reply: echo.Reply{Source: "192.0.2.9:5000", Node: "b"}}, "192.0.2.9", Fail, "externalTrafficPolicy Local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Judge(tc.obs, tc.expected, nodeIPs)
			if r.Result != tc.want || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("got %s %q, want %s %q", r.Result, r.Detail, tc.want, tc.detail)
			}
		})
	}
}

func TestMapsProgrammed(t *testing.T) {
	for body, want := range map[string]bool{
		`{"node":"a","ready":true,"services":2,"frontends":4,"backends":3,"tunnels":2}`:                    true,
		`{"ready":true,"services":2,"frontends":4,"backends":3,"skipped":["default/sctp: protocol SCTP"]}`: true,
		`{"ready":false,"services":2,"frontends":4,"backends":3}`:                                          false,
		`{"ready":true,"services":0,"frontends":0,"backends":0}`:                                           false,
		`{"ready":true,"services":1,"frontends":1,"backends":0}`:                                           false,
		`not json`: false,
	} {
		if got, detail := MapsProgrammed([]byte(body)); got != want {
			t.Errorf("%s: got %v (%s), want %v", body, got, detail, want)
		}
	}
}

func TestPlan(t *testing.T) {
	nodes := []ProbeNode{{Name: "a", Label: "n0"}, {Name: "b", Label: "n1"}, {Name: "c", Label: "n2"}}
	cases := Plan(nodes)
	if len(cases) != 24 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, c := range cases {
		if (c.Placement == Local) != (c.Ingress.Name == c.Backend.Name) {
			t.Errorf("case %+v: placement does not match the nodes", c)
		}
	}
	if n := len(Plan(nodes[:1])); n != 4 {
		t.Errorf("one node: %d cases, want 4 (local only)", n)
	}
}

func TestProbeTemplatesRender(t *testing.T) {
	var pod corev1.Pod
	err := renderObject("echo-pod.yaml", podParams{Namespace: "ns", Name: "baseline-n0", Role: "baseline", NodeLabel: "n0", Hostname: "demo-worker",
		Image: "img:1", PullPolicy: "Never", HostNetwork: true, HTTPPort: 29080, UDPPort: 29081}, &pod)
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	if !pod.Spec.HostNetwork || pod.Spec.NodeSelector[corev1.LabelHostname] != "demo-worker" || c.Image != "img:1" ||
		strings.Join(c.Command, " ") != "/usr/local/bin/kubedirect echo --http-port 29080 --udp-port 29081" {
		t.Errorf("pod %+v", pod.Spec)
	}
	var svc corev1.Service
	if err := renderObject("service.yaml", serviceParams{Namespace: "ns", Name: "echo-n0-local", NodeLabel: "n0", Policy: "Local", HTTPPort: 8080, UDPPort: 8081}, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || len(svc.Spec.Ports) != 2 ||
		svc.Spec.Selector["kubedirect.io/probe-role"] != "backend" {
		t.Errorf("service %+v", svc.Spec)
	}
}

// TestSystemPodFailureStillProves: a crashing CoreDNS fails the validation but does not hide the proof.
func TestSystemPodFailureStillProves(t *testing.T) {
	objs := append(cluster(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns-2", Namespace: "kube-system"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "coredns",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}},
	})
	rep := runFailing(t, newFakeCluster(objs...).validator(), "kube-system pod ready", "coredns-2", "CrashLoopBackOff")
	if len(rep.Matrix) != 24 || rep.Failures() != 1 {
		t.Errorf("matrix %d rows, %d failures; want 24 rows and only the CoreDNS failure", len(rep.Matrix), rep.Failures())
	}
}

// TestRunLeavesTheValidatorAsGiven: Run defaults a copy, so the caller's Validator keeps its unset
// options (a later Run, for another cluster, picks the echo image of that cluster's DaemonSet).
func TestRunLeavesTheValidatorAsGiven(t *testing.T) {
	f := newFakeCluster(cluster()...)
	v := f.validator()
	if _, err := v.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v.Image != "" || v.PullPolicy != "" || v.AgentNamespace != "" || v.EchoHTTPPort != 0 || v.PodTimeout != 0 || v.Log != nil || v.ReachHint != "" {
		t.Errorf("Run changed the caller's Validator: %+v", *v)
	}
}

// TestMapsProgrammedReadsTheAgentsStatus: the document the agent serves (agentstatus.Status) is the
// one the check reads, field for field.
func TestMapsProgrammedReadsTheAgentsStatus(t *testing.T) {
	body, err := json.Marshal(agentstatus.Status{Node: "n1", Ready: true, Services: 1, Frontends: 2, Backends: 1, Skipped: []string{"ns/a: full"}})
	if err != nil {
		t.Fatal(err)
	}
	ok, detail := MapsProgrammed(body)
	if !ok || !strings.Contains(detail, "services=1 frontends=2 backends=1") || !strings.Contains(detail, "ns/a: full") {
		t.Errorf("MapsProgrammed = %v, %q", ok, detail)
	}
}

// TestValidateFailsWhenANodesMapsDriftFromTheAPI: validate cluster reports verify's differences as a
// failed check that names the node and the entry.
func TestValidateFailsWhenANodesMapsDriftFromTheAPI(t *testing.T) {
	v := &Validator{Verify: func(context.Context) (*dpobserve.VerifyResult, error) {
		return &dpobserve.VerifyResult{Nodes: []string{"a", "b"}, Differences: []inspect.Difference{
			{Node: "b", Kind: "missing frontend", Object: "default/web:80/TCP ClusterIP 10.96.4.1:80"}}}, nil
	}}
	got := v.verify(t.Context())
	if len(got) != 2 || got[0].Result != Pass || got[1].Result != Fail || got[1].Target != "b" ||
		!strings.Contains(got[1].Detail, "b: missing frontend default/web:80/TCP ClusterIP 10.96.4.1:80") {
		t.Fatalf("checks %+v", got)
	}
}
