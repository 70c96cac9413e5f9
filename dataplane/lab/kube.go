package lab

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// AgentUser is the identity the lab's agents authenticate as; AgentRules are the only permissions it
// gets, so the lab proves the agent's RBAC needs.
const AgentUser = "kubedirect-agent"

// AgentRules are the RBAC rules the agent needs.
var AgentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"services", "nodes"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 500, 1000
	return kubernetes.NewForConfig(rc)
}

func writeKubeconfig(path, server, user, tok string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: %s
  user:
    token: %s
contexts:
- name: lab
  context: {cluster: lab, user: %s}
current-context: lab
`, server, user, tok, user)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// controlPlane starts etcd on loopback and kube-apiserver on the host end of the lab's underlay, with a
// token file (an admin and the agent identity), RBAC and a self-signed serving certificate.
func (l *Lab) controlPlane(ctx context.Context, binDir string) error {
	s := &l.State
	if binDir == "" {
		return fmt.Errorf("no Kubernetes binaries: run hack/build-k8s.sh and pass its directory")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("find %s (run hack/build-k8s.sh): %w", b, err)
		}
	}
	pki := filepath.Join(s.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	admin, agent := token(), token()
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,%s,%s\n", admin, agent, AgentUser, AgentUser)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if _, err := l.startProc("etcd", nil, filepath.Join(binDir, "etcd"), "--name", "lab",
		"--data-dir", filepath.Join(s.Dir, "etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "lab="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	s.Server = "https://" + s.HostIP + ":6443"
	s.APIServer = []string{filepath.Join(binDir, "kube-apiserver"),
		"--etcd-servers", etcdURL, "--bind-address", s.HostIP, "--advertise-address", s.HostIP, "--secure-port", "6443",
		"--cert-dir", pki, "--token-auth-file", filepath.Join(pki, "tokens.csv"), "--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16", "--service-node-port-range", "30000-32767",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"), "--allow-privileged=true",
		"--enable-priority-and-fairness=false", "--profiling=false", "--v=1"}
	if _, err := l.startProc("apiserver", nil, s.APIServer[0], s.APIServer[1:]...); err != nil {
		return err
	}
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	s.AgentKC = filepath.Join(s.Dir, "agent.kubeconfig")
	if err := writeKubeconfig(s.Kubeconfig, s.Server, "admin", admin); err != nil {
		return err
	}
	if err := writeKubeconfig(s.AgentKC, s.Server, AgentUser, agent); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := waitAPIServer(ctx, s.Server, admin, 90*time.Second); err != nil {
		return fmt.Errorf("%w (log %s)", err, l.Log("apiserver"))
	}
	c, err := clientFor(s.Kubeconfig)
	if err != nil {
		return err
	}
	l.Client = c
	return l.agentRBAC(ctx)
}

// StopAPIServer stops the lab's API server (etcd keeps running): the agents lose their watches while
// the datapath they programmed stays in the kernel.
func (l *Lab) StopAPIServer() {
	stopPid(l.State.Pids["apiserver"], l.State.Name, 10*time.Second)
}

// StartAPIServer starts the API server StopAPIServer stopped, with the same command line, and waits
// until it answers.
func (l *Lab) StartAPIServer(ctx context.Context) error {
	s := &l.State
	if len(s.APIServer) == 0 {
		return fmt.Errorf("lab %s has no recorded API server command line", s.Name)
	}
	if _, err := l.startProc("apiserver", nil, s.APIServer[0], s.APIServer[1:]...); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := l.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("API server not back: %w (log %s)", err, l.Log("apiserver"))
	}
	return nil
}

func waitAPIServer(ctx context.Context, server, tok string, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the lab's self-signed API server
	ok, err := waitOK(ctx, c, server+"/readyz", tok, timeout, 250*time.Millisecond)
	if err == nil && !ok {
		err = fmt.Errorf("kube-apiserver not ready after %s", timeout)
	}
	return err
}

// waitOK polls url (with a bearer token unless empty) every interval until it answers 200 OK, and
// reports false once timeout has passed without one; the error is only ctx's.
func waitOK(ctx context.Context, c *http.Client, url, token string, timeout, interval time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true, nil
			}
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(interval):
		}
	}
}

func (l *Lab) agentRBAC(ctx context.Context) error {
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: AgentUser}, Rules: AgentRules}
	if _, err := l.Client.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create agent cluster role: %w", err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: AgentUser},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: AgentUser},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: AgentUser}}}
	if _, err := l.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create agent cluster role binding: %w", err)
	}
	return nil
}

// registerNodes creates a Node object per lab node with its pod CIDR and InternalIP.
func (l *Lab) registerNodes(ctx context.Context) error {
	for _, n := range l.State.Nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR, PodCIDRs: []string{n.PodCIDR}}}
		created, err := l.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.Name}}
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubedirectLab"}}
		if _, err := l.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("set node %s status: %w", n.Name, err)
		}
	}
	return nil
}

// PortHTTP and PortUDP name the echo ports in lab Services and EndpointSlices.
const (
	PortHTTP = "http"
	PortUDP  = "udp"
)

// EchoService returns a Service of type typ selecting nothing (the lab writes its EndpointSlices) with an
// HTTP (TCP) and a UDP port to the echo pods.
func EchoService(name string, typ corev1.ServiceType) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{
			{Name: PortHTTP, Port: 80, Protocol: corev1.ProtocolTCP},
			{Name: PortUDP, Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
}

// CreateService creates svc and returns it as stored (with its ClusterIP and node ports).
func (l *Lab) CreateService(ctx context.Context, svc *corev1.Service) (*corev1.Service, error) {
	out, err := l.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s: %w", svc.Name, err)
	}
	return out, nil
}

// SetBackends writes the EndpointSlice of Service namespace/name with the given pods as ready endpoints
// on the echo ports (an empty list leaves the Service without endpoints).
func (l *Lab) SetBackends(ctx context.Context, namespace, name string, pods []Pod) error {
	ready := true
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	hp, up := int32(HTTPPort), int32(UDPPort)
	hn, un := PortHTTP, PortUDP
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-lab",
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "kubedirect-lab"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &hn, Port: &hp, Protocol: &tcp}, {Name: &un, Port: &up, Protocol: &udp}},
	}
	for _, p := range pods {
		node := p.Node
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.IP}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: p.Name}})
	}
	api := l.Client.DiscoveryV1().EndpointSlices(namespace)
	cur, err := api.Get(ctx, sl.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, sl, metav1.CreateOptions{})
	case err == nil:
		sl.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, sl, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write endpointslice of %s: %w", name, err)
	}
	return nil
}

// DeleteService deletes a Service and the lab's EndpointSlice of it.
func (l *Lab) DeleteService(ctx context.Context, namespace, name string) error {
	_ = l.Client.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, name+"-lab", metav1.DeleteOptions{})
	if err := l.Client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete service %s: %w", name, err)
	}
	return nil
}
