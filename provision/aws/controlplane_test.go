package aws

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// controlPlaneNodes are n control-plane nodes of the example cluster sharing one state store.
func controlPlaneNodes(e *env, s3 S3API, n int) []*Node {
	names, _ := clusterNames(e.c)
	var out []*Node
	for range n {
		nd := &Node{Names: names, S3: s3, PollInterval: time.Millisecond}
		nd.defaults()
		out = append(out, nd)
	}
	return out
}

// TestOnlyOneControlPlaneInitialises: three control-plane instances boot at once; exactly one runs
// kubeadm init, the others wait for it and join as control planes.
func TestOnlyOneControlPlaneInitialises(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	nodes := controlPlaneNodes(e, e.cloud.S3(), 3)
	modes := make([]JoinMode, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			instance := "i-" + string(rune('a'+i))
			modes[i], errs[i] = n.ControlPlaneMode(ctx, instance)
			if errs[i] == nil && modes[i] == ModeInit {
				// kubeadm init succeeded: the others may join now.
				errs[i] = n.MarkInitialised(ctx, instance)
			}
		})
	}
	wg.Wait()
	count := map[JoinMode]int{}
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		count[modes[i]]++
	}
	if count[ModeInit] != 1 || count[ModeJoinControlPlane] != 2 {
		t.Errorf("modes %v, want one init and two control-plane joins", modes)
	}
}

// TestReplacedControlPlaneJoinsInsteadOfInitialising: a control-plane instance the auto scaling group
// started in place of a dead one finds the cluster initialised and joins it (kubeadm init would make a
// second, empty cluster); a control plane whose own init attempt was cut short tries init again.
func TestReplacedControlPlaneJoinsInsteadOfInitialising(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := controlPlaneNodes(e, e.cloud.S3(), 1)[0]
	if m, err := n.ControlPlaneMode(ctx, "i-first"); err != nil || m != ModeInit {
		t.Fatalf("first: %v %v", m, err)
	}
	// i-first rebooted before kubeadm init finished: it is still the one to initialise.
	if m, err := n.ControlPlaneMode(ctx, "i-first"); err != nil || m != ModeInit {
		t.Fatalf("first again: %v %v", m, err)
	}
	if err := n.MarkInitialised(ctx, "i-first"); err != nil {
		t.Fatal(err)
	}
	// i-first is gone; its replacement joins.
	if m, err := n.ControlPlaneMode(ctx, "i-replacement"); err != nil || m != ModeJoinControlPlane {
		t.Fatalf("replacement: %v %v", m, err)
	}
	// And so does i-first itself if it ever boots a fresh disk again.
	if m, err := n.ControlPlaneMode(ctx, "i-first"); err != nil || m != ModeJoinControlPlane {
		t.Fatalf("first after init: %v %v", m, err)
	}
}

// TestControlPlaneWaitingForInitGivesUp: when the instance that took the init lock never finishes,
// the others stop waiting with an error that names the lock to delete.
func TestControlPlaneWaitingForInitGivesUp(t *testing.T) {
	e := newEnv(t)
	nodes := controlPlaneNodes(e, e.cloud.S3(), 2)
	if m, err := nodes[0].ControlPlaneMode(context.Background(), "i-dead"); err != nil || m != ModeInit {
		t.Fatal(m, err)
	}
	nodes[1].InitTimeout = 20 * time.Millisecond
	_, err := nodes[1].ControlPlaneMode(context.Background(), "i-other")
	if err == nil || !strings.Contains(err.Error(), "i-dead") || !strings.Contains(err.Error(), FileInitLock) {
		t.Errorf("err %v, want one naming i-dead and %s", err, FileInitLock)
	}
}

// TestSharedPKIIsWhatKubeadmUses: create puts every key pair the control planes share into the state
// store (kubeadm's manual certificate distribution: CA, front-proxy CA, etcd CA, service-account key);
// a control-plane node writes them where kubeadm looks, private keys 0600, and the real kubeadm signs
// its certificates with them rather than making its own.
func TestSharedPKIIsWhatKubeadmUses(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	n := controlPlaneNodes(e, e.cloud.S3(), 1)[0]
	dir := t.TempDir()
	if err := n.WriteSharedPKI(ctx, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".key") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	kubeadm := k8sBinary(t, "kubeadm")
	cfg := filepath.Join(t.TempDir(), "kubeadm.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.34.4\ncertificatesDir: "+dir+"\ncontrolPlaneEndpoint: api-int.example:6443\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubeadm, "init", "phase", "certs", "all", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("kubeadm init phase certs: %v\n%s", err, out)
	}
	for leaf, ca := range map[string]string{"apiserver.crt": "ca.crt", "front-proxy-client.crt": "front-proxy-ca.crt", "etcd/server.crt": "etcd/ca.crt"} {
		if err := signedBy(filepath.Join(dir, leaf), filepath.Join(dir, ca)); err != nil {
			t.Errorf("%s: %v", leaf, err)
		}
	}
	for _, f := range []string{"pki/sa.pub", "pki/etcd/ca.crt"} {
		got, _ := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(f, "pki/")))
		if string(got) != string(e.cloud.Object("example-kubedirect-state", "clusters/prod/"+f)) {
			t.Errorf("kubeadm replaced %s", f)
		}
	}
}

// k8sBinary is a Kubernetes binary built by hack/build-k8s.sh, or a skip.
func k8sBinary(t *testing.T, name string) string {
	t.Helper()
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache/kubedirect/k8s/v1.34.4/bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not built (hack/build-k8s.sh): %v", name, err)
	}
	return p
}

func signedBy(certFile, caFile string) error {
	parse := func(f string) (*x509.Certificate, error) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, os.ErrInvalid
		}
		return x509.ParseCertificate(block.Bytes)
	}
	cert, err := parse(certFile)
	if err != nil {
		return err
	}
	ca, err := parse(caFile)
	if err != nil {
		return err
	}
	return cert.CheckSignatureFrom(ca)
}

// TestMotoControlPlaneRoleAloneReadsTheSharedKeys: against moto's S3 with IAM enforced and the roles'
// published policies, three control planes race for the init lock and exactly one wins; a control
// plane reads the shared etcd CA key, a worker may read neither it nor the init lock.
func TestMotoControlPlaneRoleAloneReadsTheSharedKeys(t *testing.T) {
	s := requireMoto(t)
	ctx := context.Background()
	c := loadExample(t)
	c.Metadata.Name = "cp-race"
	m, err := newModel(c, "")
	if err != nil {
		t.Fatal(err)
	}
	admin := s.clients(s.admin, nil)
	creds := map[string]*Clients{}
	for _, role := range []string{roleControlPlane, roleNodes} {
		p, err := s.user(ctx, admin.IAM.(*iam.Client), "cp-race-"+role, mustJSON(m.policy(role)))
		if err != nil {
			t.Fatal(err)
		}
		creds[role] = s.clients(p, nil)
	}
	gen, err := generatePKI(ctx, store{admin.S3, m.names})
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range gen {
		if err := (store{admin.S3, m.names}).put(ctx, f, b); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	modes := make([]JoinMode, 3)
	errs := make([]error, 3)
	for i := range modes {
		n := &Node{Names: m.names, S3: creds[roleControlPlane].S3, PollInterval: 20 * time.Millisecond, InitTimeout: time.Minute}
		wg.Go(func() {
			instance := fmt.Sprintf("i-%d", i)
			if modes[i], errs[i] = n.ControlPlaneMode(ctx, instance); errs[i] == nil && modes[i] == ModeInit {
				errs[i] = n.MarkInitialised(ctx, instance)
			}
		})
	}
	wg.Wait()
	inits := 0
	for i := range modes {
		if errs[i] != nil {
			t.Fatalf("control plane %d: %v", i, errs[i])
		}
		if modes[i] == ModeInit {
			inits++
		}
	}
	if inits != 1 {
		t.Errorf("modes %v, want exactly one init", modes)
	}
	cp := &Node{Names: m.names, S3: creds[roleControlPlane].S3}
	if err := cp.WriteSharedPKI(ctx, t.TempDir()); err != nil {
		t.Errorf("control plane cannot read the shared key pairs: %v", err)
	}
	worker := store{creds[roleNodes].S3, m.names}
	for _, f := range []string{FileEtcdCAKey, FileSAKey, FileInitLock} {
		if _, err := worker.get(ctx, f); !strings.Contains(fmt.Sprint(err), "AccessDenied") {
			t.Errorf("worker reads %s: %v, want AccessDenied", f, err)
		}
	}
	if _, err := worker.get(ctx, FileCACertHash); err != nil {
		t.Errorf("worker cannot read the CA hash it joins with: %v", err)
	}
}
