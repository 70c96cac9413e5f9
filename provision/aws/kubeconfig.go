package aws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedirect/kubedirect/provision"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminCertTTL is how long an admin kubeconfig the CLI mints stays valid (kOps' `export kubeconfig
// --admin` default). A stolen copy expires; running any command again mints a fresh one.
const AdminCertTTL = 18 * time.Hour

// AdminGroup is the group of the admin certificate: system:masters is bound to cluster-admin in
// every Kubernetes version and needs no RBAC object.
const AdminGroup = "system:masters"

// ContextName is the kubeconfig context (and cluster and user entry) kubedirect gives an AWS cluster.
func ContextName(cluster string) string { return "kubedirect-" + cluster }

// Clusters of the kubeconfig without credentials the control plane publishes once its API server
// answers: the internet-facing endpoint the operator uses, and the internal one nodes and agents use.
const (
	InfoPublic   = "public"
	InfoInternal = "internal"
)

// parseClusterInfo returns the server of the published kubeconfig's cluster named which (else of any
// cluster with a server) and the CA.
func parseClusterInfo(data []byte, which string) (server string, ca []byte, err error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return "", nil, fmt.Errorf("decode the published cluster kubeconfig: %w", err)
	}
	if c := cfg.Clusters[which]; c != nil && c.Server != "" {
		return c.Server, c.CertificateAuthorityData, nil
	}
	for _, c := range cfg.Clusters {
		if c.Server != "" {
			return c.Server, c.CertificateAuthorityData, nil
		}
	}
	return "", nil, errors.New("decode the published cluster kubeconfig: it names no server")
}

// ClusterInfoKubeconfig is the kubeconfig without credentials the control plane publishes.
func ClusterInfoKubeconfig(publicServer, internalServer string, caPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[InfoPublic] = &clientcmdapi.Cluster{Server: publicServer, CertificateAuthorityData: caPEM}
	cfg.Clusters[InfoInternal] = &clientcmdapi.Cluster{Server: internalServer, CertificateAuthorityData: caPEM}
	return clientcmd.Write(*cfg)
}

// mintAdminKubeconfig signs a client certificate for the cluster's admin with the cluster CA, valid
// for ttl, and returns a kubeconfig with it, its context current.
func mintAdminKubeconfig(cluster, server string, caPEM, caKeyPEM []byte, now time.Time, ttl time.Duration) ([]byte, error) {
	caBlock, _ := pem.Decode(caPEM)
	keyBlock, _ := pem.Decode(caKeyPEM)
	if caBlock == nil || keyBlock == nil {
		return nil, errors.New("mint admin certificate: the CA in the state store is not PEM")
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mint admin certificate: parse CA: %w", err)
	}
	var caKey crypto.Signer
	if k, err := x509.ParsePKCS1PrivateKey(keyBlock.Bytes); err == nil {
		caKey = k
	} else if k, err8 := x509.ParsePKCS8PrivateKey(keyBlock.Bytes); err8 == nil {
		var ok bool
		if caKey, ok = k.(crypto.Signer); !ok {
			return nil, errors.New("mint admin certificate: the CA key cannot sign")
		}
	} else {
		return nil, fmt.Errorf("mint admin certificate: parse CA key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mint admin certificate: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("mint admin certificate: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "kubedirect-admin", Organization: []string{AdminGroup}},
		NotBefore:    now.Add(-5 * time.Minute), NotAfter: now.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("mint admin certificate: sign: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("mint admin certificate: encode key: %w", err)
	}
	name := ContextName(cluster)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ClientKeyData:         pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// mergeKubeconfig merges the single context of kc into the kubeconfig file at path (the default file
// when empty: the first existing $KUBECONFIG entry, else its last, else ~/.kube/config), makes it
// current and leaves the file with mode 0600.
func mergeKubeconfig(kc []byte, path string) (string, error) {
	if path == "" {
		path = provision.DefaultKubeconfigPath()
	}
	in, err := clientcmd.Load(kc)
	if err != nil {
		return "", fmt.Errorf("merge kubeconfig: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	if b, err := os.ReadFile(path); err == nil {
		if cfg, err = clientcmd.Load(b); err != nil {
			return "", fmt.Errorf("merge kubeconfig into %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("merge kubeconfig into %s: %w", path, err)
	}
	for k, v := range in.Clusters {
		cfg.Clusters[k] = v
	}
	for k, v := range in.AuthInfos {
		cfg.AuthInfos[k] = v
	}
	for k, v := range in.Contexts {
		cfg.Contexts[k] = v
	}
	cfg.CurrentContext = in.CurrentContext
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return "", fmt.Errorf("merge kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("merge kubeconfig into %s: %w", path, err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return "", fmt.Errorf("merge kubeconfig into %s: %w", path, err)
	}
	return path, os.Chmod(path, 0o600)
}

// removeFromKubeconfig removes the cluster's context, cluster and user from the file at path (the
// default when empty); a missing file is no error.
func removeFromKubeconfig(cluster, path string) error {
	if path == "" {
		path = provision.DefaultKubeconfigPath()
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove context from %s: %w", path, err)
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		return fmt.Errorf("remove context from %s: %w", path, err)
	}
	name := ContextName(cluster)
	if _, ok := cfg.Contexts[name]; !ok {
		return nil
	}
	delete(cfg.Contexts, name)
	delete(cfg.Clusters, name)
	delete(cfg.AuthInfos, name)
	if cfg.CurrentContext == name {
		cfg.CurrentContext = ""
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("remove context from %s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o600)
}
