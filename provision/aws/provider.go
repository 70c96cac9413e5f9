package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/kubedirect/kubedirect/provision/spec"
	"go.yaml.in/yaml/v3"
)

// Provider creates, plans and deletes kubedirect clusters on AWS.
type Provider struct {
	clients *Clients
	log     *slog.Logger
	backoff Backoff
	poll    time.Duration
}

// Option configures a Provider.
type Option func(*Provider)

// WithClients makes the provider use these clients instead of building real ones from the environment's
// AWS configuration (tests pass fakes).
func WithClients(c *Clients) Option { return func(p *Provider) { p.clients = c } }

// WithLogger sets where the provider logs what it does. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(p *Provider) { p.log = l } }

// WithBackoff sets the retries on eventual consistency and throttling. Default: DefaultBackoff.
func WithBackoff(b Backoff) Option { return func(p *Provider) { p.backoff = b } }

// WithPollInterval sets how often delete and Kubeconfig look again while they wait. Default: 10s.
func WithPollInterval(d time.Duration) Option { return func(p *Provider) { p.poll = d } }

// NewProvider returns a provider. Nothing contacts AWS until a method that needs it runs.
func NewProvider(opts ...Option) *Provider {
	p := &Provider{log: slog.New(slog.NewTextHandler(io.Discard, nil)), backoff: DefaultBackoff, poll: 10 * time.Second}
	for _, o := range opts {
		o(p)
	}
	return p
}

// NewClients builds real AWS clients for region from the environment's configuration (profiles,
// environment variables, SSO, ...). Credentials are resolved lazily, at the first call.
func NewClients(ctx context.Context, region string) (*Clients, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region), config.WithRetryMaxAttempts(8))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return &Clients{
		EC2: ec2.NewFromConfig(cfg), IAM: iam.NewFromConfig(cfg), AutoScaling: autoscaling.NewFromConfig(cfg),
		ELB: elb.NewFromConfig(cfg), S3: s3.NewFromConfig(cfg), STS: sts.NewFromConfig(cfg),
	}, nil
}

// clusterClients returns the cluster's resource names and the clients for its region.
func (p *Provider) clusterClients(ctx context.Context, c *spec.Cluster) (Names, *Clients, error) {
	names, err := clusterNames(c)
	if err != nil {
		return Names{}, nil, err
	}
	cl, err := p.clientsFor(ctx, c.Spec.AWS.Region)
	return names, cl, err
}

func (p *Provider) clientsFor(ctx context.Context, region string) (*Clients, error) {
	if p.clients != nil {
		return p.clients, nil
	}
	c, err := NewClients(ctx, region)
	if err != nil {
		return nil, err
	}
	p.clients = c
	return c, nil
}

// readSSHKey returns the contents of the spec's public key file, "" when it names none.
func readSSHKey(c *spec.Cluster) (string, error) {
	path := c.Spec.AWS.SSHPublicKey
	if path == "" {
		return "", nil
	}
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("read SSH public key %s: %w", path, err)
		}
		path = filepath.Join(home, rest)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read SSH public key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (p *Provider) newRun(c *spec.Cluster, cl *Clients, offline bool) (*run, []task, error) {
	if c.Spec.AWS == nil {
		return nil, nil, fmt.Errorf("cluster %q: spec.aws is required with provider aws", c.Metadata.Name)
	}
	key, err := readSSHKey(c)
	if err != nil {
		return nil, nil, err
	}
	m, err := newModel(c, key)
	if err != nil {
		return nil, nil, err
	}
	r := &run{cl: cl, m: m, offline: offline, backoff: p.backoff, found: map[string]*actual{}, images: map[string]string{},
		log: func(msg string, args ...any) { p.log.Info(msg, args...) }}
	tasks, err := orderTasks(m.tasks())
	if err != nil {
		return nil, nil, err
	}
	return r, tasks, nil
}

// orderTasks sorts tasks so that every task comes after the tasks its Deps name (a topological sort,
// as kOps runs its tasks). It is stable: of the tasks whose dependencies are all placed, the earliest
// in the given order goes next, so the plan reads in tasks()' order where the dependencies allow. A
// dependency on a key no task has, a repeated key or a cycle is an error.
func orderTasks(tasks []task) ([]task, error) {
	index := make(map[string]int, len(tasks))
	for i, t := range tasks {
		if _, dup := index[t.Key()]; dup {
			return nil, fmt.Errorf("order tasks: two tasks have key %q", t.Key())
		}
		index[t.Key()] = i
	}
	for _, t := range tasks {
		for _, d := range t.Deps() {
			if _, ok := index[d]; !ok {
				return nil, fmt.Errorf("order tasks: %s depends on %q, which no task has", t.Key(), d)
			}
		}
	}
	out := make([]task, 0, len(tasks))
	placed := make([]bool, len(tasks))
	for len(out) < len(tasks) {
		next := -1
		for i, t := range tasks {
			if !placed[i] && slices.IndexFunc(t.Deps(), func(d string) bool { return !placed[index[d]] }) < 0 {
				next = i
				break
			}
		}
		if next < 0 {
			var left []string
			for i, t := range tasks {
				if !placed[i] {
					left = append(left, t.Key())
				}
			}
			return nil, fmt.Errorf("order tasks: dependency cycle among %s", strings.Join(left, ", "))
		}
		placed[next] = true
		out = append(out, tasks[next])
	}
	return out, nil
}

// tasks are the cluster's resources, in the order the plan lists them where the dependencies allow
// (orderTasks sorts them by their Deps).
func (m *model) tasks() []task {
	var ts []task
	ts = append(ts,
		&secretTask{m: m, key: "pki", files: pkiFiles, generate: generatePKI},
		&secretTask{m: m, key: "token", files: []string{FileToken}, generate: generateToken},
	)
	if m.existingVPC != "" {
		ts = append(ts, &existingVPCTask{m})
	} else {
		ts = append(ts, &vpcTask{m})
	}
	ts = append(ts, &internetGatewayTask{m})
	for _, z := range m.zones {
		ts = append(ts, &subnetTask{m: m, zone: z})
	}
	ts = append(ts, &routeTableTask{m},
		&securityGroupTask{m: m, purpose: sgNodes, desc: "kubedirect " + m.names.Cluster + " nodes"},
		&securityGroupTask{m: m, purpose: sgAPILB, desc: "kubedirect " + m.names.Cluster + " API load balancer"},
		&securityGroupTask{m: m, purpose: sgAPIInternal, desc: "kubedirect " + m.names.Cluster + " internal API load balancer"},
		&securityGroupRulesTask{m: m, purpose: sgNodes},
		&securityGroupRulesTask{m: m, purpose: sgAPILB},
		&securityGroupRulesTask{m: m, purpose: sgAPIInternal},
	)
	for _, role := range m.roles() {
		ts = append(ts, &roleTask{m: m, role: role}, &instanceProfileTask{m: m, role: role})
	}
	if m.sshKey != "" {
		ts = append(ts, &keyPairTask{m})
	}
	for _, lb := range []apiLB{{m: m}, {m: m, internal: true}} {
		ts = append(ts, &targetGroupTask{lb}, &loadBalancerTask{lb}, &listenerTask{lb})
	}
	groups := append([]spec.NodeGroup(nil), m.groups...)
	sort.SliceStable(groups, func(i, j int) bool {
		return groups[i].Role == spec.RoleControlPlane && groups[j].Role != spec.RoleControlPlane
	})
	for _, g := range groups {
		ts = append(ts, &launchTemplateTask{m: m, group: g}, &autoScalingGroupTask{m: m, group: g})
	}
	var all []string
	for _, t := range ts {
		all = append(all, t.Key())
	}
	ts = append(ts,
		&fileTask{m: m, file: FileSpec, deps: all, content: func(*run) ([]byte, error) { return yaml.Marshal(m.spec) }},
		&fileTask{m: m, file: FileState, deps: all, content: m.stateFile},
	)
	return ts
}

// roles are the IAM roles the node groups need.
func (m *model) roles() []string {
	out := []string{roleControlPlane}
	for _, g := range m.groups {
		if roleOf(g) == roleNodes {
			return append(out, roleNodes)
		}
	}
	return out
}

// stateFile is state.json: the images chosen and the IDs of the resources.
func (m *model) stateFile(r *run) ([]byte, error) {
	st := clusterState{Images: r.images, Resources: map[string]string{}}
	for key, a := range r.found {
		if a != nil && !strings.HasPrefix(key, "file/") && !strings.HasPrefix(key, "secret/") {
			st.Resources[key] = a.ID
		}
	}
	return json.MarshalIndent(st, "", "  ")
}

// header describes the plan's cluster.
func (m *model) header(offline bool) []string {
	h := []string{
		fmt.Sprintf("# Plan for cluster %q on aws, region %s, zones %s", m.names.Cluster, m.region, strings.Join(m.zones, ", ")),
		fmt.Sprintf("# State store: %s", m.names.StateStore()),
		fmt.Sprintf("# Every resource is tagged %s=%s and %s=owned.", TagCluster, m.names.Cluster, KubernetesClusterTag(m.names.Cluster)),
	}
	for _, l := range m.controlPlaneSummary() {
		h = append(h, "# "+l)
	}
	h = append(h,
		fmt.Sprintf("# API: the operator through %s (access.api), the nodes through %s inside the VPC; health checks %s; cross-zone on.", m.names.LoadBalancer(), m.names.InternalLoadBalancer(), healthCheck),
		fmt.Sprintf("# Operator permissions: aws.RequiredActions, with iam:CreateServiceLinkedRole for %s (a fresh account's first load balancer and auto scaling group).", strings.Join(serviceLinkedRoleServices, " and ")),
	)
	if offline {
		h = append(h, "# Offline plan: no AWS call was made; create compares with the account and changes only what differs.")
	}
	return h
}

// PlanOffline returns everything create would make on an empty account. It needs no credentials and
// makes no call to AWS (not even to the instance metadata service).
func (p *Provider) PlanOffline(c *spec.Cluster) (*Plan, error) {
	r, tasks, err := p.newRun(c, nil, true)
	if err != nil {
		return nil, err
	}
	return r.plan(context.Background(), tasks, true)
}

// Plan compares the account with the spec and returns what create would do.
func (p *Provider) Plan(ctx context.Context, c *spec.Cluster) (*Plan, error) {
	r, tasks, err := p.online(ctx, c)
	if err != nil {
		return nil, err
	}
	return r.plan(ctx, tasks, false)
}

// Create makes or changes every resource the cluster needs, waits until the node groups' instances
// are in service, and returns what it did. After a failure,
// running it again resumes; on an applied cluster it changes nothing. It holds the cluster's lock in
// the state store while it runs.
func (p *Provider) Create(ctx context.Context, c *spec.Cluster) (*Plan, error) {
	r, tasks, err := p.online(ctx, c)
	if err != nil {
		return nil, err
	}
	unlock, err := store{r.cl.S3, r.m.names}.lock(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	defer unlock()
	plan, err := r.apply(ctx, tasks)
	if plan != nil {
		plan.Header = r.m.header(false)
	}
	if err != nil {
		return plan, err
	}
	return plan, r.waitInService(ctx, p.poll, inServiceTimeout)
}

// online prepares a run against the account: credentials, state store, zones and images.
func (p *Provider) online(ctx context.Context, c *spec.Cluster) (*run, []task, error) {
	if c.Spec.AWS == nil {
		return nil, nil, fmt.Errorf("cluster %q: spec.aws is required with provider aws", c.Metadata.Name)
	}
	cl, err := p.clientsFor(ctx, c.Spec.AWS.Region)
	if err != nil {
		return nil, nil, err
	}
	r, tasks, err := p.newRun(c, cl, false)
	if err != nil {
		return nil, nil, err
	}
	if err := r.preflight(ctx); err != nil {
		return nil, nil, err
	}
	return r, tasks, nil
}

// preflight checks the credentials, the state store's region and the zones, and picks the images.
func (r *run) preflight(ctx context.Context) error {
	id, err := r.cl.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("check AWS credentials: %w", explain(err))
	}
	r.log("using AWS identity", "arn", aws.ToString(id.Arn))
	s := store{r.cl.S3, r.m.names}
	if err := s.checkRegion(ctx, r.m.region); err != nil {
		return err
	}
	zones, err := r.cl.EC2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{ZoneNames: r.m.zones})
	if err != nil {
		return fmt.Errorf("check zones %s of region %s: %w", strings.Join(r.m.zones, ", "), r.m.region, explain(err))
	}
	offered := map[string]bool{}
	for _, z := range zones.AvailabilityZones {
		offered[aws.ToString(z.ZoneName)] = z.State == ec2types.AvailabilityZoneStateAvailable
	}
	for _, z := range r.m.zones {
		if !offered[z] {
			return fmt.Errorf("check zones: zone %s is not available in region %s for this account", z, r.m.region)
		}
	}
	st, err := s.loadState(ctx)
	if err != nil {
		return err
	}
	for _, a := range r.m.archs() {
		if id := st.Images[a]; id != "" {
			r.images[a] = id
			continue
		}
		id, err := r.latestImage(ctx, a)
		if err != nil {
			return err
		}
		r.images[a] = id
	}
	return nil
}

// Canonical's account, which publishes the official Ubuntu images.
const ubuntuOwner = "099720109477"

// latestImage is the newest Ubuntu 24.04 server image for arch.
func (r *run) latestImage(ctx context.Context, arch string) (string, error) {
	name := "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-" + arch + "-server-*"
	out, err := r.cl.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{ubuntuOwner}, Filters: []ec2types.Filter{filter("name", name), filter("state", "available")}})
	if err != nil {
		return "", fmt.Errorf("look up image %s: %w", name, explain(err))
	}
	if len(out.Images) == 0 {
		return "", fmt.Errorf("look up image %s: none in region %s", name, r.m.region)
	}
	imgs := out.Images
	sort.Slice(imgs, func(i, j int) bool { return aws.ToString(imgs[i].CreationDate) > aws.ToString(imgs[j].CreationDate) })
	return aws.ToString(imgs[0].ImageId), nil
}

// ErrNoKubeconfig is returned by Kubeconfig when the control plane has not published one in time.
var ErrNoKubeconfig = errors.New("the control plane has not published the admin kubeconfig")

// Kubeconfig waits up to timeout for the admin kubeconfig the control plane publishes to the state
// store and for the API's load balancers to have a healthy control plane, and returns it.
func (p *Provider) Kubeconfig(ctx context.Context, c *spec.Cluster, timeout time.Duration) ([]byte, error) {
	names, cl, err := p.clusterClients(ctx, c)
	if err != nil {
		return nil, err
	}
	s := store{cl.S3, names}
	deadline := time.Now().Add(timeout)
	for {
		b, err := s.get(ctx, FileKubeconfig)
		if err == nil {
			// The CLI talks to the API through the load balancers next: wait until they route to it
			// (health checks pass about 20 s after the API server listens; at least 30 polls).
			if err := p.WaitAPIHealthy(ctx, c, max(time.Until(deadline), 30*p.poll)); err != nil {
				return nil, err
			}
			return b, nil
		}
		if !errors.Is(err, errNoObject) {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("wait for %s%s: %w", s.names.StateStore(), FileKubeconfig, ErrNoKubeconfig)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(p.poll):
		}
	}
}
