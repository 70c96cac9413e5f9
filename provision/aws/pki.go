package aws

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
)

// sharedKeyPair is a certificate (or public key) and its private key that every control-plane node
// must hold the same copy of.
type sharedKeyPair struct {
	public, private string
	// cn is the CA's common name, as kubeadm would give it; "" for the service-account key.
	cn string
}

// sharedKeyPairs are what kubeadm's "manual certificate distribution" copies to a joining control
// plane. The CLI makes them once, in the state store, rather than the first node uploading them with
// `kubeadm init --upload-certs`: kubeadm deletes that upload after two hours, and a control plane the
// auto scaling group replaces a week later must still find them.
var sharedKeyPairs = []sharedKeyPair{
	{FileCACert, FileCAKey, "kubernetes"},
	{FileFrontProxyCACert, FileFrontProxyCAKey, "front-proxy-ca"},
	{FileEtcdCACert, FileEtcdCAKey, "etcd-ca"},
	{FileSAPub, FileSAKey, ""},
}

// pkiFiles are the state-store objects of the "pki" secret task.
var pkiFiles = func() []string {
	var f []string
	for _, p := range sharedKeyPairs {
		f = append(f, p.public, p.private)
	}
	return append(f, FileCACertHash)
}()

// generatePKI makes the shared key pairs the store lacks (a pair is made whole or not at all) and the
// hash workers pin the CA with.
func generatePKI(ctx context.Context, s store) (map[string][]byte, error) {
	out := map[string][]byte{}
	var caCert []byte
	for _, p := range sharedKeyPairs {
		pub, errPub := s.get(ctx, p.public)
		_, errPriv := s.get(ctx, p.private)
		switch {
		case errPub == nil && errPriv == nil:
		case errors.Is(errPub, errNoObject) && errors.Is(errPriv, errNoObject):
			var priv []byte
			var err error
			if p.cn == "" {
				pub, priv, err = newServiceAccountKey()
			} else {
				pub, priv, err = newCA(s.names.Cluster, p.cn)
			}
			if err != nil {
				return nil, err
			}
			out[p.public], out[p.private] = pub, priv
		case errPub != nil && !errors.Is(errPub, errNoObject):
			return nil, errPub
		case errPriv != nil && !errors.Is(errPriv, errNoObject):
			return nil, errPriv
		default:
			return nil, fmt.Errorf("generate PKI: the state store has only one of %s and %s; restore the other or delete the cluster", p.public, p.private)
		}
		if p.public == FileCACert {
			caCert = pub
		}
	}
	hash, err := caCertHash(caCert)
	if err != nil {
		return nil, err
	}
	out[FileCACertHash] = []byte(hash)
	return out, nil
}

// newServiceAccountKey is the key pair kube-apiserver signs service-account tokens with (sa.key,
// sa.pub), PEM encoded as kubeadm writes them.
func newServiceAccountKey() (pubPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate service-account key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode service-account public key: %w", err)
	}
	pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return pubPEM, keyPEM, nil
}

// WriteSharedPKI writes the shared key pairs from the state store into dir (/etc/kubernetes/pki),
// where kubeadm init uses them instead of making its own and kubeadm join --control-plane expects
// them. Private keys are 0600.
func (n *Node) WriteSharedPKI(ctx context.Context, dir string) error {
	st := store{n.S3, n.Names}
	for _, p := range sharedKeyPairs {
		for _, file := range []string{p.public, p.private} {
			b, err := st.get(ctx, file)
			if err != nil {
				return fmt.Errorf("read shared key pair %s: %w", file, err)
			}
			path := filepath.Join(dir, strings.TrimPrefix(file, dirPKI))
			mode := os.FileMode(0o644)
			if file == p.private {
				mode = 0o600
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return fmt.Errorf("write shared key pair: %w", err)
			}
			if err := replaceFile(path, b, mode); err != nil {
				return fmt.Errorf("write shared key pair %s: %w", path, err)
			}
		}
	}
	return nil
}

// randomSerial is a certificate serial number: random, so that certificates issued again never repeat
// one, and 62 bits, well inside the 20 octets RFC 5280 allows.
func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
}
