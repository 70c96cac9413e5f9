package aws

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/provision"
	"k8s.io/client-go/tools/clientcmd"
)

// publishControlPlane puts into the state store what the control plane publishes once its API
// server answers.
func publishControlPlane(t *testing.T, e *env, server string) {
	t.Helper()
	ca := e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileCACert)
	info, err := ClusterInfoKubeconfig(server, "https://prod-api-internal.example:6443", ca)
	if err != nil {
		t.Fatal(err)
	}
	e.cloud.PutObject("example-kubedirect-state", "clusters/prod/"+FileKubeconfig, info)
}

// TestAWSClusterIsFoundByNameInTheStateStore: after create, `get clusters` and a lookup by name
// through the state store find the cluster with the spec it was created with; delete removes it and
// then reports it absent.
func TestAWSClusterIsFoundByNameInTheStateStore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.p.AsProvisionProvider("s3://example-kubedirect-state/clusters")
	if ok, err := a.Exists(ctx, e.c); ok || err != nil {
		t.Fatalf("exists before create: %v %v", ok, err)
	}
	if _, err := a.Get(ctx, "prod"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("get before create: %v", err)
	}
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	names, err := a.List(ctx)
	if err != nil || !slices.Equal(names, []string{"prod"}) {
		t.Fatalf("list: %v %v", names, err)
	}
	c, err := a.Get(ctx, "prod")
	if err != nil || c.Spec.AWS.Region != "eu-west-1" || c.Spec.Networking.ExternalServiceMode != "dsr" {
		t.Fatalf("get: %+v %v", c, err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "config"))
	if err := a.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Exists(ctx, c); ok || err != nil {
		t.Errorf("exists after delete: %v %v", ok, err)
	}
	if err := a.Delete(ctx, c); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// TestAdminKubeconfigIsShortLivedAndNotInTheStateStore: the admin credential is a client certificate
// the CLI signs for AdminCertTTL; nothing in the state store grants admin by itself except the CA key.
func TestAdminKubeconfigIsShortLivedAndNotInTheStateStore(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	publishControlPlane(t, e, "https://prod-api.example:6443")
	a := e.p.AsProvisionProvider("").(*clusterProvider)
	now := time.Now().UTC().Truncate(time.Second)
	a.now = func() time.Time { return now }
	kc, err := a.Kubeconfig(ctx, e.c)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	user := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	block, _ := pem.Decode(user.ClientCertificateData)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.NotAfter.Sub(now); got != AdminCertTTL {
		t.Errorf("admin certificate valid for %s, want %s", got, AdminCertTTL)
	}
	if !slices.Equal(cert.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin certificate groups %v", cert.Subject.Organization)
	}
	caPEM := e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileCACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate does not chain to the cluster CA: %v", err)
	}
	if cfg.Clusters[cfg.CurrentContext].Server != "https://prod-api.example:6443" {
		t.Errorf("server %q", cfg.Clusters[cfg.CurrentContext].Server)
	}
	host, port, err := a.APIServerAddress(ctx, e.c)
	if host != "prod-api-internal.example" || port != 6443 || err != nil {
		t.Errorf("API server address %s %d %v", host, port, err)
	}
	// What the control plane publishes carries no credentials.
	info, _ := clientcmd.Load(e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileKubeconfig))
	if len(info.AuthInfos) != 0 {
		t.Errorf("the published kubeconfig carries credentials: %v", info.AuthInfos)
	}
}

// TestExportKubeconfigMergesWithMode0600: export adds the context to an existing kubeconfig without
// losing its other contexts, and leaves the file readable by its owner only.
func TestExportKubeconfigMergesWithMode0600(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	publishControlPlane(t, e, "https://prod-api.example:6443")
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://other:6443}\ncontexts:\n- name: other\n  context: {cluster: other}\ncurrent-context: other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := e.p.AsProvisionProvider("")
	name, err := a.ExportKubeconfig(ctx, e.c, path)
	if err != nil || name != "kubedirect-prod" {
		t.Fatalf("export: %q %v", name, err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "kubedirect-prod" || cfg.Contexts["other"] == nil {
		t.Errorf("merged kubeconfig: current %q, contexts %v", cfg.CurrentContext, cfg.Contexts)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
}
