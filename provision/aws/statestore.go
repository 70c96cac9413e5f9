package aws

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// store reads and writes the cluster's files in the S3 state store.
type store struct {
	s3    S3API
	names Names
}

// errNoObject is returned by get for a missing object.
var errNoObject = errors.New("no such object")

func (s store) get(ctx context.Context, file string) ([]byte, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.names.Bucket()), Key: aws.String(s.names.StateKey(file))})
	if isCode(err, "NoSuchKey", "NotFound") {
		return nil, errNoObject
	}
	if err != nil {
		return nil, fmt.Errorf("read %s%s: %w", s.names.StateStore(), file, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s%s: %w", s.names.StateStore(), file, err)
	}
	return b, nil
}

func (s store) put(ctx context.Context, file string, data []byte) error {
	// Objects are encrypted by the bucket's default encryption (S3 encrypts every object since 2023;
	// a bucket set to SSE-KMS keeps its key).
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.names.Bucket()), Key: aws.String(s.names.StateKey(file)), Body: bytes.NewReader(data)})
	if err != nil {
		return fmt.Errorf("write %s%s: %w", s.names.StateStore(), file, err)
	}
	return nil
}

// checkRegion refuses a bucket outside the cluster's region: nodes would read it across regions, and
// the state of a cluster belongs with it.
func (s store) checkRegion(ctx context.Context, region string) error {
	out, err := s.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(s.names.Bucket())})
	if isCode(err, "NoSuchBucket") {
		return fmt.Errorf("check state store s3://%s: the bucket does not exist; create it in %s first (aws s3 mb s3://%s --region %s)", s.names.Bucket(), region, s.names.Bucket(), region)
	}
	if err != nil {
		return fmt.Errorf("check state store s3://%s: %w", s.names.Bucket(), explain(err))
	}
	loc := string(out.LocationConstraint)
	switch loc {
	case "":
		loc = "us-east-1"
	case "EU":
		loc = "eu-west-1"
	}
	if loc != region {
		return fmt.Errorf("check state store s3://%s: the bucket is in region %s but the cluster is in %s; use a bucket in %s", s.names.Bucket(), loc, region, region)
	}
	return nil
}

// clusterState is what the state store records of an applied cluster besides its spec.
type clusterState struct {
	// Images are the AMIs chosen at the first create, per architecture; later runs keep them.
	Images map[string]string `json:"images"`
	// Resources are the IDs of the cluster's resources by task key.
	Resources map[string]string `json:"resources"`
}

func (s store) loadState(ctx context.Context) (*clusterState, error) {
	b, err := s.get(ctx, FileState)
	if errors.Is(err, errNoObject) {
		return &clusterState{Images: map[string]string{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var st clusterState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode %s%s: %w", s.names.StateStore(), FileState, err)
	}
	if st.Images == nil {
		st.Images = map[string]string{}
	}
	return &st, nil
}

// fileTask is a state-store object whose content the spec determines (the spec as applied, the state).
type fileTask struct {
	m       *model
	file    string
	deps    []string
	content func(r *run) ([]byte, error)
}

func (t *fileTask) Key() string    { return "file/" + t.file }
func (t *fileTask) Kind() string   { return "StateFile" }
func (t *fileTask) Name() string   { return t.m.names.StateStore() + t.file }
func (t *fileTask) Deps() []string { return t.deps }

func (t *fileTask) Desired(r *run) []Field {
	b, err := t.content(r)
	if err != nil {
		return []Field{{Name: "sha256", Value: "(" + err.Error() + ")"}}
	}
	return []Field{{Name: "sha256", Value: sha256Hex(b)}}
}

func (t *fileTask) Find(ctx context.Context, r *run) (*actual, error) {
	b, err := store{r.cl.S3, t.m.names}.get(ctx, t.file)
	if errors.Is(err, errNoObject) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &actual{ID: t.file, Fields: []Field{{Name: "sha256", Value: sha256Hex(b)}}}, nil
}

func (t *fileTask) Render(ctx context.Context, r *run, _ *actual, _ []Change) (*actual, error) {
	b, err := t.content(r)
	if err != nil {
		return nil, err
	}
	if err := (store{r.cl.S3, t.m.names}).put(ctx, t.file, b); err != nil {
		return nil, err
	}
	return &actual{ID: t.file, Fields: t.Desired(r)}, nil
}

// secretTask is a state-store object generated once (the CA, the bootstrap token) and never replaced:
// its only field is that it exists.
type secretTask struct {
	m        *model
	key      string
	files    []string
	generate func(ctx context.Context, s store) (map[string][]byte, error)
}

func (t *secretTask) Key() string    { return "secret/" + t.key }
func (t *secretTask) Kind() string   { return "StateSecret" }
func (t *secretTask) Name() string   { return t.m.names.StateStore() + t.key }
func (t *secretTask) Deps() []string { return nil }

func (t *secretTask) Desired(*run) []Field {
	var f []Field
	for _, file := range t.files {
		f = append(f, Field{Name: "object", Value: file + " (generated, never printed)"})
	}
	return f
}

func (t *secretTask) Find(ctx context.Context, r *run) (*actual, error) {
	s := store{r.cl.S3, t.m.names}
	a := &actual{ID: t.key}
	for _, file := range t.files {
		_, err := s.get(ctx, file)
		if errors.Is(err, errNoObject) {
			continue
		}
		if err != nil {
			return nil, err
		}
		a.Fields = append(a.Fields, Field{Name: "object", Value: file + " (generated, never printed)"})
	}
	if len(a.Fields) == 0 {
		return nil, nil
	}
	return a, nil
}

func (t *secretTask) Render(ctx context.Context, r *run, _ *actual, _ []Change) (*actual, error) {
	s := store{r.cl.S3, t.m.names}
	files, err := t.generate(ctx, s)
	if err != nil {
		return nil, err
	}
	for _, name := range t.files {
		if data, ok := files[name]; ok {
			if err := s.put(ctx, name, data); err != nil {
				return nil, err
			}
		}
	}
	return &actual{ID: t.key, Fields: t.Desired(r)}, nil
}

// newCA returns a self-signed CA certificate with common name cn and its RSA key, PEM encoded, as
// kubeadm expects them.
func newCA(cluster, cn string) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"kubedirect " + cluster}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		IsCA:     true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return certPEM, keyPEM, nil
}

// caCertHash is kubeadm's discovery hash of a CA: sha256 of its SubjectPublicKeyInfo.
func caCertHash(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "", fmt.Errorf("decode CA certificate: no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parse CA certificate: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// generateToken makes a kubeadm bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}.
func generateToken(context.Context, store) (map[string][]byte, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	for i := range 22 {
		if i == 6 {
			b.WriteByte('.')
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return nil, fmt.Errorf("generate bootstrap token: %w", err)
		}
		b.WriteByte(alphabet[n.Int64()])
	}
	return map[string][]byte{FileToken: []byte(b.String())}, nil
}
