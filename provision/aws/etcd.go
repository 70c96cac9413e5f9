package aws

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Etcd snapshots: every control plane runs the timer, only the etcd leader of the moment uploads.
const (
	// EtcdSnapshotSchedule is the systemd OnCalendar expression of the snapshot timer.
	EtcdSnapshotSchedule = "hourly"
	// EtcdSnapshotsKept is how many snapshots the state store keeps; older ones are deleted.
	EtcdSnapshotsKept = 48
	// etcdRevisionBump is added to the restored revision, as etcd's guide for Kubernetes advises, so
	// that watchers (kube-apiserver's caches, controllers) never see a revision go backwards.
	etcdRevisionBump = 1_000_000_000
)

// Where kubeadm's stacked etcd keeps its data and the API server's client certificate.
const (
	EtcdDataDir    = "/var/lib/etcd"
	etcdManifest   = "/etc/kubernetes/manifests/etcd.yaml"
	etcdClientCert = pkiDir + "/apiserver-etcd-client.crt"
	etcdClientKey  = pkiDir + "/apiserver-etcd-client.key"
	etcdCACert     = pkiDir + "/etcd/ca.crt"
)

// EtcdTLS is the client side of a connection to the cluster's etcd, which trusts only certificates
// its CA signed.
func EtcdTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("load etcd CA: no certificate")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load etcd client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// LocalEtcdTLS is the TLS of this control plane's API server towards its etcd.
func LocalEtcdTLS() (*tls.Config, error) {
	var pems [3][]byte
	for i, f := range []string{etcdCACert, etcdClientCert, etcdClientKey} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read etcd credentials: %w", err)
		}
		pems[i] = b
	}
	return EtcdTLS(pems[0], pems[1], pems[2])
}

// etcdClientCertFromCA signs a short-lived etcd client certificate with the etcd CA: a control plane
// that is not a member yet needs one to remove the member of the instance it replaces.
func etcdClientCertFromCA(caPEM, caKeyPEM []byte) (certPEM, keyPEM []byte, err error) {
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(caKeyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("sign etcd client certificate: the etcd CA is not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("sign etcd client certificate: %w", err)
	}
	caKey, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("sign etcd client certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("sign etcd client certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("sign etcd client certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "kubedirect-etcd-rejoin"},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign etcd client certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign etcd client certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// RemoveDeadMembers removes the etcd members whose peer address is none of live (the private
// addresses of the running control-plane instances) and returns their names. An instance the auto
// scaling group terminated leaves its member behind: with it a three-member cluster that gains the
// replacement has four members, needs three for quorum, and the next failure stops the API.
func RemoveDeadMembers(ctx context.Context, cli *clientv3.Client, live []string) ([]string, error) {
	if len(live) == 0 {
		return nil, errors.New("remove dead etcd members: no live control plane known; refusing to judge")
	}
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	alive := func(m *etcdserverpb.Member) bool {
		for _, u := range m.PeerURLs {
			if pu, err := url.Parse(u); err == nil && slices.Contains(live, pu.Hostname()) {
				return true
			}
		}
		return false
	}
	// If no member is a live instance, the list of instances and etcd disagree about addresses:
	// judging by it would remove the cluster's own members.
	if !slices.ContainsFunc(list.Members, alive) {
		return nil, fmt.Errorf("remove dead etcd members: none of the %d members is at a live control plane's address %v; refusing to judge", len(list.Members), live)
	}
	var removed []string
	for _, m := range list.Members {
		if alive(m) {
			continue
		}
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x (never started)", m.ID)
		}
		if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
			return removed, fmt.Errorf("remove etcd member %s %v: %w", name, m.PeerURLs, err)
		}
		removed = append(removed, name)
	}
	return removed, nil
}

// InstanceAPI is the part of *ec2.Client a control plane uses to find the others.
type InstanceAPI interface {
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// liveControlPlanes are the private addresses of the cluster's pending and running control-plane
// instances.
func (n *Node) liveControlPlanes(ctx context.Context) ([]string, error) {
	in := &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{n.Names.Cluster}},
		{Name: aws.String("tag:" + TagRole), Values: []string{roleControlPlane}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}},
	}}
	var ips []string
	p := ec2.NewDescribeInstancesPaginator(n.EC2, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list control-plane instances: %w", err)
		}
		for _, r := range out.Reservations {
			for _, i := range r.Instances {
				if ip := aws.ToString(i.PrivateIpAddress); ip != "" {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips, nil
}

// removeReplacedMembers runs on a control plane about to join: it reaches etcd on the other live
// control planes with a certificate from the shared etcd CA and removes the members of instances
// that are gone.
func (n *Node) removeReplacedMembers(ctx context.Context, self string) error {
	live, err := n.liveControlPlanes(ctx)
	if err != nil {
		return err
	}
	var endpoints []string
	for _, ip := range live {
		if ip != self {
			endpoints = append(endpoints, "https://"+net.JoinHostPort(ip, "2379"))
		}
	}
	if len(endpoints) == 0 {
		return nil
	}
	st := store{n.S3, n.Names}
	caPEM, err := st.get(ctx, FileEtcdCACert)
	if err != nil {
		return fmt.Errorf("read etcd CA: %w", err)
	}
	caKey, err := st.get(ctx, FileEtcdCAKey)
	if err != nil {
		return fmt.Errorf("read etcd CA key: %w", err)
	}
	certPEM, keyPEM, err := etcdClientCertFromCA(caPEM, caKey)
	if err != nil {
		return err
	}
	tc, err := EtcdTLS(caPEM, certPEM, keyPEM)
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	removed, err := RemoveDeadMembers(ctx, cli, live)
	if len(removed) > 0 {
		n.Log.Info("removed the etcd members of replaced control planes", "members", removed)
	}
	return err
}

// snapshotName is a snapshot's file name; names sort by time.
func snapshotName(t time.Time) string { return t.UTC().Format("20060102T150405Z") + ".db" }

// SnapshotEtcd saves a snapshot of etcd (through cli, connected to endpoint) in the state store under
// DirEtcdBackups and deletes all but the newest EtcdSnapshotsKept. Only the member that leads at the
// moment uploads, so that three control planes make one snapshot; the others return "" and no error.
func (n *Node) SnapshotEtcd(ctx context.Context, cli *clientv3.Client, endpoint string, now time.Time) (string, error) {
	n.defaults()
	status, err := cli.Status(ctx, endpoint)
	if err != nil {
		return "", fmt.Errorf("read etcd status of %s: %w", endpoint, err)
	}
	if status.Leader != status.Header.MemberId {
		n.Log.Info("not the etcd leader; the leader takes the snapshot", "endpoint", endpoint)
		return "", nil
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return "", fmt.Errorf("snapshot etcd: %w", err)
	}
	defer rc.Close()
	// A file, not memory: the database can be large, and S3 wants a body it can read twice to sign.
	f, err := os.CreateTemp("", "etcd-snapshot-*.db")
	if err != nil {
		return "", fmt.Errorf("snapshot etcd: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, rc)
	if err != nil {
		return "", fmt.Errorf("snapshot etcd: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("snapshot etcd: %w", err)
	}
	file := DirEtcdBackups + snapshotName(now)
	_, err = n.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(n.Names.Bucket()), Key: aws.String(n.Names.StateKey(file)), Body: f, ContentLength: aws.Int64(size)})
	if err != nil {
		return "", fmt.Errorf("upload etcd snapshot %s%s: %w", n.Names.StateStore(), file, err)
	}
	n.Log.Info("saved etcd snapshot", "object", n.Names.StateStore()+file, "bytes", size)
	snaps, err := n.etcdSnapshots(ctx)
	if err != nil {
		return file, err
	}
	for len(snaps) > EtcdSnapshotsKept {
		old := snaps[0]
		snaps = snaps[1:]
		if _, err := n.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(n.Names.Bucket()), Key: aws.String(n.Names.StateKey(old))}); err != nil {
			return file, fmt.Errorf("delete old etcd snapshot %s: %w", old, err)
		}
	}
	return file, nil
}

// etcdSnapshots are the state store's snapshots (files relative to the cluster), oldest first.
func (n *Node) etcdSnapshots(ctx context.Context) ([]string, error) {
	var files []string
	prefix := n.Names.StateKey(DirEtcdBackups)
	p := s3.NewListObjectsV2Paginator(n.S3, &s3.ListObjectsV2Input{Bucket: aws.String(n.Names.Bucket()), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list etcd snapshots: %w", err)
		}
		for _, o := range out.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".db") {
				files = append(files, DirEtcdBackups+strings.TrimPrefix(k, prefix))
			}
		}
	}
	slices.Sort(files)
	return files, nil
}

// RestoreEtcd writes a new etcd data directory dataDir from a snapshot in the state store (file
// relative to the cluster, or "latest"), for a cluster of one member, name at peerURL, whose
// revisions continue past the snapshot's. dataDir must not exist. It returns the snapshot's file.
func (n *Node) RestoreEtcd(ctx context.Context, file, dataDir, name, peerURL string) (string, error) {
	n.defaults()
	if file == "" || file == "latest" {
		snaps, err := n.etcdSnapshots(ctx)
		if err != nil {
			return "", err
		}
		if len(snaps) == 0 {
			return "", fmt.Errorf("restore etcd: no snapshot under %s%s", n.Names.StateStore(), DirEtcdBackups)
		}
		file = snaps[len(snaps)-1]
	}
	b, err := (store{n.S3, n.Names}).get(ctx, file)
	if err != nil {
		return "", fmt.Errorf("restore etcd: read snapshot %s: %w", file, err)
	}
	tmp, err := os.MkdirTemp("", "etcd-restore-")
	if err != nil {
		return "", fmt.Errorf("restore etcd: %w", err)
	}
	defer os.RemoveAll(tmp)
	snap := filepath.Join(tmp, "snapshot.db")
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		return "", fmt.Errorf("restore etcd: %w", err)
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath: snap, Name: name, OutputDataDir: dataDir, PeerURLs: []string{peerURL},
		InitialCluster: name + "=" + peerURL, InitialClusterToken: "kubedirect-restore-" + snapshotName(time.Now()),
		RevisionBump: etcdRevisionBump, MarkCompacted: true,
	})
	if err != nil {
		return "", fmt.Errorf("restore etcd from %s: %w", file, err)
	}
	n.Log.Info("restored etcd", "snapshot", n.Names.StateStore()+file, "dataDir", dataDir, "member", name)
	return file, nil
}

// localEtcd is this control plane's etcd member, as kubeadm's manifest serves it.
const localEtcd = "https://127.0.0.1:2379"

// SnapshotLocalEtcd is `kubedirect node etcd-snapshot`: SnapshotEtcd through this control plane's
// member with the API server's etcd client certificate.
func (n *Node) SnapshotLocalEtcd(ctx context.Context) (string, error) {
	tc, err := LocalEtcdTLS()
	if err != nil {
		return "", err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{localEtcd}, TLS: tc, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", fmt.Errorf("connect to etcd %s: %w", localEtcd, err)
	}
	defer cli.Close()
	return n.SnapshotEtcd(ctx, cli, localEtcd, time.Now())
}

// RestoreLocalEtcd is `kubedirect node etcd-restore`: it stops this control plane's etcd (moves its
// static pod manifest away and waits until the member stops answering), keeps the old data directory
// beside the new one, restores the snapshot as a one-member cluster of this node (its name and peer
// address as kubeadm gave them), and starts etcd again. The README's AWS section says what to do
// with the other control planes.
func (n *Node) RestoreLocalEtcd(ctx context.Context, file string, id *Identity) (string, error) {
	n.defaults()
	parked := filepath.Join(filepath.Dir(filepath.Dir(etcdManifest)), "etcd.yaml.restoring")
	if err := os.Rename(etcdManifest, parked); err != nil {
		return "", fmt.Errorf("stop etcd: %w", err)
	}
	n.Log.Info("stopping etcd", "manifest", parked)
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:2379", time.Second)
		if err != nil {
			return true, nil
		}
		c.Close()
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("stop etcd: still serving after 2m (its manifest is at %s): %w", parked, err)
	}
	old := EtcdDataDir + ".before-restore-" + snapshotName(time.Now())
	if err := os.Rename(EtcdDataDir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("keep old etcd data: %w", err)
	}
	got, err := n.RestoreEtcd(ctx, file, EtcdDataDir, id.Hostname, "https://"+net.JoinHostPort(id.PrivateIP, "2380"))
	if err != nil {
		return "", fmt.Errorf("%w (etcd is stopped: its manifest is at %s, the old data at %s)", err, parked, old)
	}
	if err := os.Rename(parked, etcdManifest); err != nil {
		return "", fmt.Errorf("start etcd: %w", err)
	}
	n.Log.Info("etcd starts from the snapshot", "snapshot", got, "oldData", old)
	return got, nil
}
