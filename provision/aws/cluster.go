package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// StateStoreEnv names the environment variable that gives the state store of `get clusters` and
// `delete cluster --name` when --state-store is not set (as kOps' KOPS_STATE_STORE).
const StateStoreEnv = "KUBEDIRECT_STATE_STORE"

// ControlPlaneTimeout bounds how long create waits for the control plane to publish that its API
// server answers.
var ControlPlaneTimeout = 25 * time.Minute

// clusterProvider is the AWS provider behind provision.Provider.
type clusterProvider struct {
	p          *Provider
	stateStore string // s3://bucket[/prefix], for List and Get; a spec names its own
	now        func() time.Time
}

// AsProvisionProvider returns p behind provision.Provider. stateStore (s3://bucket[/prefix]) is where
// List and Get look for clusters; calls given a spec use the spec's own store.
func (p *Provider) AsProvisionProvider(stateStore string) provision.Provider {
	return &clusterProvider{p: p, stateStore: stateStore, now: time.Now}
}

var _ provision.Provider = (*clusterProvider)(nil)

func (a *clusterProvider) Name() spec.Provider { return spec.ProviderAWS }

// Describe is the line create prints before it starts.
func (a *clusterProvider) Describe(c *spec.Cluster) string {
	return fmt.Sprintf("Creating cluster %q on aws (region %s, Kubernetes %s) ...", c.Metadata.Name, c.Spec.AWS.Region, c.Spec.KubernetesVersion)
}

// CreateStep names the one step Create runs as.
func (a *clusterProvider) CreateStep(*spec.Cluster) string {
	return "Creating AWS resources and waiting for the control plane"
}

// WritePlan writes the offline plan: no credentials, no AWS call.
func (a *clusterProvider) WritePlan(_ context.Context, c *spec.Cluster, w io.Writer) error {
	plan, err := a.p.PlanOffline(c)
	if err != nil {
		return fmt.Errorf("plan cluster %q: %w", c.Metadata.Name, err)
	}
	return plan.Write(w)
}

// Create applies the cluster's resources (resuming, or changing what differs on an existing cluster),
// waits for the control plane to publish that its API server answers, and merges a short-lived admin
// context into the kubeconfig file.
func (a *clusterProvider) Create(ctx context.Context, c *spec.Cluster, opts ...provision.CreateOption) error {
	o := provision.BuildCreateOptions(opts...)
	// The nodes fetch the kubedirect binary while they boot (user-data retries until it is there):
	// publish it before they launch; if the store is not usable yet, Create says why, then try again.
	publish := func() error { return nil }
	if o.Image != nil {
		arch, err := a.NodeArch(c)
		if err != nil {
			return err
		}
		publish = func() error { return a.publishBinary(ctx, c, arch, o.Image.Binary()) }
	}
	published := publish() == nil
	plan, err := a.p.Create(ctx, c)
	if plan != nil {
		a.p.log.Info("AWS resources: " + plan.Summary())
	}
	if err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Metadata.Name, err)
	}
	if !published {
		if err := publish(); err != nil {
			return fmt.Errorf("create cluster %q: %w", c.Metadata.Name, err)
		}
	}
	if _, err := a.p.Kubeconfig(ctx, c, ControlPlaneTimeout); err != nil {
		return fmt.Errorf("create cluster %q: %w (%s)", c.Metadata.Name, err, a.NodeLogHint(c, "the control-plane node"))
	}
	if _, err := a.ExportKubeconfig(ctx, c, o.KubeconfigPath); err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Metadata.Name, err)
	}
	return nil
}

// Delete removes everything tagged with the cluster's name, its state-store files and its kubeconfig
// context.
func (a *clusterProvider) Delete(ctx context.Context, c *spec.Cluster, opts ...provision.DeleteOption) error {
	o := provision.BuildDeleteOptions(opts...)
	ok, err := a.Exists(ctx, c)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("aws cluster %q in %s: %w", c.Metadata.Name, c.Spec.AWS.StateStore, provision.ErrNotFound)
	}
	report, err := a.p.Delete(ctx, c)
	if report == nil {
		return fmt.Errorf("delete cluster %q: %w", c.Metadata.Name, err)
	}
	a.p.log.Info("deleted AWS resources", "cluster", c.Metadata.Name, "count", len(report.Deleted))
	if len(report.Failed) > 0 {
		return fmt.Errorf("delete cluster %q: %d could not be removed (run delete again):\n%w", c.Metadata.Name, len(report.Failed), errors.Join(report.Failed...))
	}
	return removeFromKubeconfig(c.Metadata.Name, o.KubeconfigPath)
}

// Exists reports whether the state store holds anything of the cluster (a create writes the CA first).
func (a *clusterProvider) Exists(ctx context.Context, c *spec.Cluster) (bool, error) {
	names, err := clusterNames(c)
	if err != nil {
		return false, err
	}
	s3c, err := a.s3For(ctx, names.Bucket(), c.Spec.AWS.Region)
	if err != nil {
		return false, err
	}
	out, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(names.Bucket()), Prefix: aws.String(names.StateKey("")), MaxKeys: aws.Int32(1)})
	if err != nil {
		return false, fmt.Errorf("look for cluster %q in %s: %w", c.Metadata.Name, names.StateStore(), explain(err))
	}
	return len(out.Contents) > 0, nil
}

// List returns the clusters whose spec is in the state store.
func (a *clusterProvider) List(ctx context.Context) ([]string, error) {
	if a.stateStore == "" {
		return nil, nil
	}
	s3c, bucket, prefix, err := a.stateStoreS3(ctx)
	if err != nil {
		return nil, err
	}
	base := NewNames("x", bucket, prefix).StateKey("")
	base = strings.TrimSuffix(base, "x/")
	seen := map[string]bool{}
	var token *string
	for {
		out, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(base), ContinuationToken: token})
		if err != nil {
			return nil, fmt.Errorf("list clusters in %s: %w", a.stateStore, explain(err))
		}
		for _, obj := range out.Contents {
			rest := strings.TrimPrefix(aws.ToString(obj.Key), base)
			if name, file, ok := strings.Cut(rest, "/"); ok && file == FileSpec {
				seen[name] = true
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		token = out.NextContinuationToken
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Get reads the spec the cluster was created with from the state store.
func (a *clusterProvider) Get(ctx context.Context, name string) (*spec.Cluster, error) {
	if a.stateStore == "" {
		return nil, fmt.Errorf("aws cluster %q: no state store given (--state-store or $%s): %w", name, StateStoreEnv, provision.ErrNotFound)
	}
	s3c, bucket, prefix, err := a.stateStoreS3(ctx)
	if err != nil {
		return nil, err
	}
	st := store{s3c, NewNames(name, bucket, prefix)}
	b, err := st.get(ctx, FileSpec)
	if errors.Is(err, errNoObject) {
		return nil, fmt.Errorf("aws cluster %q in %s: %w", name, a.stateStore, provision.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	c, err := spec.Load(b)
	if err != nil {
		return nil, fmt.Errorf("spec of cluster %q in the state store: %w", name, err)
	}
	return c, nil
}

// Kubeconfig mints an admin kubeconfig valid for AdminCertTTL: the server and CA the control plane
// published, and a client certificate signed here with the cluster CA from the state store. Nothing
// long-lived that grants admin is ever written to the state store.
func (a *clusterProvider) Kubeconfig(ctx context.Context, c *spec.Cluster) ([]byte, error) {
	st, err := a.store(ctx, c)
	if err != nil {
		return nil, err
	}
	info, err := st.get(ctx, FileKubeconfig)
	if errors.Is(err, errNoObject) {
		return nil, fmt.Errorf("kubeconfig of %q: %w", c.Metadata.Name, ErrNoKubeconfig)
	}
	if err != nil {
		return nil, err
	}
	server, _, err := parseClusterInfo(info, InfoPublic)
	if err != nil {
		return nil, err
	}
	caCert, err := st.get(ctx, FileCACert)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %q: read the CA: %w", c.Metadata.Name, err)
	}
	caKey, err := st.get(ctx, FileCAKey)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %q: read the CA key: %w", c.Metadata.Name, err)
	}
	return mintAdminKubeconfig(c.Metadata.Name, server, caCert, caKey, a.now(), AdminCertTTL)
}

// ExportKubeconfig merges a freshly minted admin context into the file at path.
func (a *clusterProvider) ExportKubeconfig(ctx context.Context, c *spec.Cluster, path string) (string, error) {
	kc, err := a.Kubeconfig(ctx, c)
	if err != nil {
		return "", err
	}
	if _, err := mergeKubeconfig(kc, path); err != nil {
		return "", err
	}
	return ContextName(c.Metadata.Name), nil
}

// APIServerAddress is the internal API endpoint the control plane published (the API's internal load
// balancer): the nodes reach it without kube-proxy, and it is in the API server's certificate.
func (a *clusterProvider) APIServerAddress(ctx context.Context, c *spec.Cluster) (string, int, error) {
	st, err := a.store(ctx, c)
	if err != nil {
		return "", 0, err
	}
	info, err := st.get(ctx, FileKubeconfig)
	if err != nil {
		return "", 0, fmt.Errorf("API server address of %q: %w", c.Metadata.Name, err)
	}
	server, _, err := parseClusterInfo(info, InfoInternal)
	if err != nil {
		return "", 0, err
	}
	return install.SplitServerURL(server, 443)
}

// NodeArch is the architecture of the node groups' instance types; they must agree, since the
// self-image holds one binary.
func (a *clusterProvider) NodeArch(c *spec.Cluster) (string, error) {
	m := &model{groups: c.Spec.NodeGroups}
	archs := m.archs()
	if len(archs) != 1 {
		return "", fmt.Errorf("node groups of %q mix architectures (%s): set spec.dataplane.image to a multi-architecture image", c.Metadata.Name, strings.Join(archs, ", "))
	}
	return archs[0], nil
}

// NodeLogHint says where a node's bootstrap log is.
func (a *clusterProvider) NodeLogHint(c *spec.Cluster, node string) string {
	region := ""
	if c.Spec.AWS != nil {
		region = " --region " + c.Spec.AWS.Region
	}
	return fmt.Sprintf("read the bootstrap log of %s with `aws ec2 get-console-output%s --latest --output text --instance-id ID` "+
		"(find ID with `aws ec2 describe-instances%s --filters Name=tag:%s,Values=%s Name=private-dns-name,Values=NODE`), "+
		"or on the node in /var/log/kubedirect-bootstrap.log; run create with --retain to keep a failed cluster",
		node, region, region, TagCluster, c.Metadata.Name)
}

// store is the cluster's state store, reached with a client of the cluster's region.
func (a *clusterProvider) store(ctx context.Context, c *spec.Cluster) (store, error) {
	names, err := clusterNames(c)
	if err != nil {
		return store{}, err
	}
	s3c, err := a.s3For(ctx, names.Bucket(), c.Spec.AWS.Region)
	if err != nil {
		return store{}, err
	}
	return store{s3c, names}, nil
}

// s3For returns an S3 client for bucket: the provider's clients when it has them (tests, or a run
// that already made them), else one for region, or for the bucket's own region when region is empty.
// stateStoreS3 parses the state store given to the CLI and returns an S3 client in its bucket's region.
func (a *clusterProvider) stateStoreS3(ctx context.Context) (s3c S3API, bucket, prefix string, err error) {
	bucket, prefix, err = spec.ParseStateStore(a.stateStore)
	if err != nil {
		return nil, "", "", fmt.Errorf("state store %q: %w", a.stateStore, err)
	}
	s3c, err = a.s3For(ctx, bucket, "")
	return s3c, bucket, prefix, err
}

func (a *clusterProvider) s3For(ctx context.Context, bucket, region string) (S3API, error) {
	if a.p.clients != nil {
		return a.p.clients.S3, nil
	}
	if region != "" {
		cl, err := a.p.clientsFor(ctx, region)
		if err != nil {
			return nil, err
		}
		return cl.S3, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // any region answers GetBucketLocation
	}
	loc, err := s3.NewFromConfig(cfg).GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
	if err != nil {
		return nil, fmt.Errorf("find the region of state store s3://%s: %w", bucket, explain(err))
	}
	switch r := string(loc.LocationConstraint); r {
	case "":
		cfg.Region = "us-east-1"
	case "EU":
		cfg.Region = "eu-west-1"
	default:
		cfg.Region = r
	}
	return s3.NewFromConfig(cfg), nil
}
