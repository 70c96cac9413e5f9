package aws

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/kubedirect/kubedirect/internal/testutil"
	"github.com/kubedirect/kubedirect/provision/aws/fake"
	"github.com/kubedirect/kubedirect/provision/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) {
	// Belt and braces: no test builds a real client, and none may ever look for instance metadata.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	code := m.Run()
	stopMoto()
	os.Exit(code)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run go test -update to accept):\n%s", path, got)
	}
}

func loadExample(t *testing.T) *spec.Cluster {
	t.Helper()
	c, err := spec.LoadFile("../../examples/aws.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// env is a fake account with the example's state-store bucket, and a provider using it.
type env struct {
	cloud *fake.Cloud
	p     *Provider
	c     *spec.Cluster
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cloud := fake.New("eu-west-1")
	cloud.AddBucket("example-kubedirect-state", "eu-west-1")
	clients := &Clients{EC2: cloud.EC2(), IAM: cloud.IAM(), AutoScaling: cloud.AutoScaling(), ELB: cloud.ELB(), S3: cloud.S3(), STS: cloud.STS()}
	p := NewProvider(WithClients(clients), WithBackoff(Backoff{Attempts: 5, Initial: time.Millisecond, Max: time.Millisecond}), WithPollInterval(time.Millisecond))
	return &env{cloud: cloud, p: p, c: loadExample(t)}
}

// newCreatedEnv is newEnv after a first create of the example cluster succeeded.
func newCreatedEnv(t *testing.T) (*env, context.Context) {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	return e, ctx
}

// wantNoChanges stops the test unless a plan of e's cluster now has nothing to change (when says at
// which point); the message shows the plan.
func (e *env) wantNoChanges(t *testing.T, ctx context.Context, when string) {
	t.Helper()
	plan, err := e.p.Plan(ctx, e.c)
	if err != nil {
		t.Fatalf("plan %s: %v", when, err)
	}
	if plan.Pending() != 0 {
		t.Fatalf("plan %s has %d changes:\n%s", when, plan.Pending(), plan)
	}
}

func apiErr(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }

func TestDryRunPlanOfExampleIsGolden(t *testing.T) {
	// PlanOffline gets no clients at all: any AWS call would panic on the nil interface.
	plan, err := NewProvider().PlanOffline(loadExample(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := plan.Write(&out); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan-aws.golden", out.Bytes())
	testutil.WantContains(t, "plan", out.String(),
		"ingress: udp 8472 from sg kubedirect-prod-nodes (VXLAN between the cluster's nodes)",
		"ingress: tcp 30000-32767 from 0.0.0.0/0 (NodePort services)",
		"ingress: udp 30000-32767 from 0.0.0.0/0 (NodePort services)",
		"ingress: tcp 6443 from 203.0.113.0/24 (Kubernetes API)",
		"ingress: tcp 22 from 203.0.113.0/24 (SSH)",
	)
	if plan.Pending() != len(plan.Items) {
		t.Errorf("offline plan: %d of %d resources to create, want all", plan.Pending(), len(plan.Items))
	}
}

func TestCreateOnEmptyAccountMakesTheCluster(t *testing.T) {
	e := newEnv(t)
	plan, err := e.p.Create(context.Background(), e.c)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Pending() != len(plan.Items) {
		t.Errorf("created %d of %d resources on an empty account", plan.Pending(), len(plan.Items))
	}
	// A VPC comes with a main route table and a default security group.
	for kind, want := range map[string]int{
		"VPC": 1, "Subnet": 2, "InternetGateway": 1, "RouteTable": 2, "SecurityGroup": 4, "IAMRole": 2, "InstanceProfile": 2,
		"KeyPair": 0, "LoadBalancer": 2, "TargetGroup": 2, "Listener": 2, "LaunchTemplate": 2, "AutoScalingGroup": 2, "Instance": 4,
	} {
		if got := e.cloud.Count(kind); got != want {
			t.Errorf("%s: %d, want %d", kind, got, want)
		}
	}
	owned := e.cloud.Tagged(TagCluster, "prod")
	k8s := e.cloud.Tagged(KubernetesClusterTag("prod"), "owned")
	if !slices.Equal(owned, k8s) {
		t.Errorf("resources tagged %s differ from those tagged %s:\n%v\n%v", TagCluster, KubernetesClusterTag("prod"), owned, k8s)
	}
	if len(owned) != 1+2+1+1+3+2+2+2+2+2+2+2+4 {
		t.Errorf("%d tagged resources: %v", len(owned), owned)
	}
	objects := e.cloud.Objects("example-kubedirect-state", "clusters/prod/")
	for _, f := range []string{FileSpec, FileState, FileCACert, FileCAKey, FileCACertHash, FileToken} {
		if !slices.Contains(objects, "clusters/prod/"+f) {
			t.Errorf("state store lacks %s: %v", f, objects)
		}
	}
	token := string(e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileToken))
	if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(token) {
		t.Errorf("bootstrap token %q is not in kubeadm's format", token)
	}
	hash := string(e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileCACertHash))
	want, err := caCertHash(e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileCACert))
	if err != nil || hash != want || !strings.HasPrefix(hash, "sha256:") {
		t.Errorf("CA cert hash %q, want %q (%v)", hash, want, err)
	}
}

func TestSecondCreatePlansNoChange(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	before := e.cloud.MutatingCalls()
	e.wantNoChanges(t, ctx, "on an applied cluster")
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	// Only the lock is written and released.
	before["PutObject"]++
	before["DeleteObject"]++
	if after := e.cloud.MutatingCalls(); !mapsEqual(before, after) {
		t.Errorf("second create changed something: calls before (plus the lock) %v, after %v", before, after)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestDeleteLeavesNoTaggedResource(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	describes := e.cloud.Calls("DescribeInstances")
	report, err := e.p.Delete(ctx, e.c)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if e.cloud.Calls("DescribeInstances")-describes < 2 {
		t.Error("delete did not wait for the instances to terminate")
	}
	if e.cloud.Calls("DeleteSecurityGroup") < 4 {
		t.Error("delete did not retry the security groups a load balancer's interfaces still held")
	}
	if left := e.cloud.Tagged(TagCluster, "prod"); len(left) > 0 {
		t.Errorf("tagged resources left: %v", left)
	}
	if left := e.cloud.Tagged(KubernetesClusterTag("prod"), "owned"); len(left) > 0 {
		t.Errorf("resources tagged %s left: %v", KubernetesClusterTag("prod"), left)
	}
	for _, kind := range []string{"VPC", "Subnet", "RouteTable", "SecurityGroup", "IAMRole", "InstanceProfile", "LoadBalancer", "TargetGroup", "Listener", "Instance"} {
		if n := e.cloud.Count(kind); n != 0 {
			t.Errorf("%d %s left", n, kind)
		}
	}
	if objs := e.cloud.Objects("example-kubedirect-state", "clusters/prod/"); len(objs) > 0 {
		t.Errorf("state store objects left: %v", objs)
	}
	if len(report.Deleted) == 0 {
		t.Error("report lists nothing deleted")
	}
	// Deleting again finds nothing and succeeds.
	report, err = e.p.Delete(ctx, e.c)
	if err != nil || len(report.Deleted) != 0 {
		t.Errorf("second delete: %v, deleted %v", err, report.Deleted)
	}
}

func TestCreateResumesAfterAFailureHalfway(t *testing.T) {
	for _, op := range []string{"CreateSubnet", "AuthorizeSecurityGroupIngress", "PutRolePolicy", "AddRoleToInstanceProfile",
		"CreateLoadBalancer", "CreateListener", "CreateLaunchTemplate", "CreateAutoScalingGroup", "PutObject"} {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.cloud.FailNext(op, apiErr("VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit allows"))
			_, err := e.p.Create(ctx, e.c)
			if err == nil {
				t.Fatal("create succeeded despite the injected failure")
			}
			if !strings.Contains(err.Error(), "kubedirect-prod") && !strings.Contains(err.Error(), "s3://") && !strings.Contains(err.Error(), `lock cluster "prod"`) {
				t.Errorf("error does not name the resource: %v", err)
			}
			if !strings.Contains(err.Error(), "quota") {
				t.Errorf("error does not explain the cause: %v", err)
			}
			if _, err := e.p.Create(ctx, e.c); err != nil {
				t.Fatalf("re-run: %v", err)
			}
			for kind, want := range map[string]int{"VPC": 1, "Subnet": 2, "SecurityGroup": 4, "LoadBalancer": 2, "LaunchTemplate": 2, "AutoScalingGroup": 2, "Instance": 4} {
				if got := e.cloud.Count(kind); got != want {
					t.Errorf("%s: %d after resuming, want %d", kind, got, want)
				}
			}
			e.wantNoChanges(t, ctx, "after resuming")
		})
	}
}

func TestEventualConsistencyIsRetried(t *testing.T) {
	e := newEnv(t)
	e.cloud.FailNext("CreateSubnet", apiErr("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist"))
	e.cloud.FailNext("CreateAutoScalingGroup", apiErr("ValidationError", "Invalid IamInstanceProfile: kubedirect-prod-nodes"))
	e.cloud.FailNext("DescribeSecurityGroups", apiErr("RequestLimitExceeded", "Request limit exceeded."))
	// The VPC is made, then configuring it fails: the retry must find it, not make a second one.
	e.cloud.FailNext("ModifyVpcAttribute", apiErr("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist"))
	e.cloud.FailNext("AssociateRouteTable", apiErr("InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-1' does not exist"))
	if _, err := e.p.Create(context.Background(), e.c); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]int{"VPC": 1, "RouteTable": 2, "Subnet": 2, "AutoScalingGroup": 2, "Instance": 4} {
		if got := e.cloud.Count(kind); got != want {
			t.Errorf("%s: %d, want %d", kind, got, want)
		}
	}
	if plan, err := e.p.Plan(context.Background(), e.c); err != nil || plan.Pending() != 0 {
		t.Errorf("plan after retries: %v, %d pending", err, plan.Pending())
	}
}

func TestErrorsNameTheCause(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(*env)
		expect []string
	}{
		{"credentials", func(e *env) {
			e.cloud.FailNext("GetCallerIdentity", apiErr("ExpiredToken", "The security token included in the request is expired"))
		}, []string{"credentials"}},
		{"bucket in another region", func(e *env) { e.cloud.AddBucket("example-kubedirect-state", "us-east-1") }, []string{"us-east-1", "eu-west-1", "s3://example-kubedirect-state"}},
		{"no bucket", func(e *env) { e.c.Spec.AWS.StateStore = "s3://missing-bucket/x" }, []string{"does not exist", "missing-bucket"}},
		{"unknown zone", func(e *env) { e.c.Spec.AWS.Zones = []string{"eu-west-1a", "eu-west-1z"} }, []string{"zone", "eu-west-1z"}},
		{"permission", func(e *env) { e.cloud.FailNext("CreateVpc", apiErr("UnauthorizedOperation", "You are not authorized")) }, []string{"VPC kubedirect-prod", "permission"}},
		{"throttling", func(e *env) {
			for range 5 {
				e.cloud.FailNext("CreateInternetGateway", apiErr("RequestLimitExceeded", "Request limit exceeded."))
			}
		}, []string{"InternetGateway kubedirect-prod", "throttled"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			_, err := e.p.Create(context.Background(), e.c)
			if err == nil {
				t.Fatal("create succeeded")
			}
			for _, want := range tc.expect {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestChangesInPlaceAndRefusedReplacement(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	e.c.Spec.NodeGroups[1].Count = 5
	e.c.Spec.NodeGroups[1].MachineType = "t3.xlarge"
	e.c.Spec.AWS.Access.NodePort = []string{"198.51.100.0/24"}
	plan, err := e.p.Plan(ctx, e.c)
	if err != nil {
		t.Fatal(err)
	}
	var updated []string
	for _, it := range plan.Items {
		if it.Action == ActionUpdate {
			updated = append(updated, it.Kind+" "+it.Name)
		}
	}
	want := []string{"SecurityGroupRules kubedirect-prod-nodes", "LaunchTemplate kubedirect-prod-workers", "AutoScalingGroup kubedirect-prod-workers",
		"StateFile s3://example-kubedirect-state/clusters/prod/spec.yaml"}
	if !slices.Equal(updated, want) {
		t.Errorf("updates %v, want %v", updated, want)
	}
	testutil.WantContains(t, "plan", plan.String(),
		"size: min 3 max 3 desired 3 -> min 5 max 5 desired 5",
		"instanceType: t3.large -> t3.xlarge",
		"running ones keep theirs until replaced",
		"ingress: - tcp 30000-32767 from 0.0.0.0/0 (NodePort services)\n",
		"ingress: + udp 30000-32767 from 198.51.100.0/24 (NodePort services)\n",
	)
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	e.wantNoChanges(t, ctx, "after the update")
	if n := e.cloud.Count("Instance"); n != 6 {
		t.Errorf("%d instances after scaling the workers to 5, want 6", n)
	}
	e.c.Spec.AWS.NetworkCIDR = "172.21.0.0/16"
	if _, err := e.p.Create(ctx, e.c); !errors.Is(err, ErrNeedsReplacement) {
		t.Errorf("changing the VPC's CIDR: %v, want %v", err, ErrNeedsReplacement)
	}
}

func TestDeleteReportsWhatItCouldNotRemove(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	e.cloud.FailNext("DeleteVpc", apiErr("UnauthorizedOperation", "You are not authorized to perform this operation."))
	report, err := e.p.Delete(ctx, e.c)
	if err == nil || len(report.Failed) != 2 {
		t.Fatalf("delete: %v, failed %v", err, report.Failed)
	}
	if !strings.Contains(err.Error(), "delete VPC vpc-") || !strings.Contains(err.Error(), "permission") {
		t.Errorf("error does not name the VPC and the cause: %v", err)
	}
	if len(e.cloud.Objects("example-kubedirect-state", "clusters/prod/")) == 0 {
		t.Error("state store removed although resources remain")
	}
	if _, err := e.p.Delete(ctx, e.c); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if left := e.cloud.Tagged(TagCluster, "prod"); len(left) > 0 {
		t.Errorf("left: %v", left)
	}
}

func TestExistingVPCIsUsedAndKept(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vpc, igw := e.cloud.AddVPC("10.10.0.0/16")
	e.c.Spec.AWS.VPCID = vpc
	e.c.Spec.AWS.NetworkCIDR = "10.10.0.0/20"
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	if n := e.cloud.Count("VPC"); n != 1 {
		t.Errorf("%d VPCs, want the existing one only", n)
	}
	e.wantNoChanges(t, ctx, "after a second create")
	if _, err := e.p.Delete(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	if e.cloud.Count("VPC") != 1 || e.cloud.Count("InternetGateway") != 1 || e.cloud.Count("Subnet") != 0 {
		t.Errorf("after delete: %d VPC, %d internet gateways (want the existing ones), %d subnets", e.cloud.Count("VPC"), e.cloud.Count("InternetGateway"), e.cloud.Count("Subnet"))
	}
	_ = igw
}

func TestSSHKeyIsImportedOnce(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "id.pub")
	if err := os.WriteFile(path, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.c.Spec.AWS.SSHPublicKey = path
	ctx := context.Background()
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	if e.cloud.Count("KeyPair") != 1 {
		t.Fatalf("%d key pairs", e.cloud.Count("KeyPair"))
	}
	e.wantNoChanges(t, ctx, "after a second create")
	if err := os.WriteFile(path, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnotherKey test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Create(ctx, e.c); !errors.Is(err, ErrNeedsReplacement) {
		t.Errorf("another key: %v, want %v", err, ErrNeedsReplacement)
	}
}

func TestIAMPoliciesAreLeastPrivilege(t *testing.T) {
	c := loadExample(t)
	m, err := newModel(c, "")
	if err != nil {
		t.Fatal(err)
	}
	nodes := mustJSON(m.policy(roleNodes))
	cp := mustJSON(m.policy(roleControlPlane))
	if strings.Contains(nodes, "pki/") || strings.Contains(nodes, "s3:PutObject") {
		t.Errorf("workers may read the CA key or write the state store: %s", nodes)
	}
	if !strings.Contains(cp, `"arn:aws:s3:::example-kubedirect-state/clusters/prod/kubeconfig/admin.conf"`) {
		t.Errorf("control plane may not publish the kubeconfig: %s", cp)
	}
	for _, role := range []string{roleNodes, roleControlPlane} {
		for _, st := range m.policy(role).Statement {
			if slices.Contains(st.Action, "ec2:ModifyInstanceAttribute") && (st.Condition["StringEquals"]["aws:ARN"][0] != "${ec2:SourceInstanceARN}" || slices.Contains(st.Resource, "*")) {
				t.Errorf("dsr permission is not limited to the instance itself: %s", st.summary())
			}
		}
	}
	if strings.Contains(nodes, "control-plane/") || strings.Contains(nodes, "backups/") || strings.Contains(nodes, "ec2:DescribeInstances") {
		t.Errorf("workers may read the init lock or etcd snapshots, or list instances: %s", nodes)
	}
	c.Spec.Networking.ExternalServiceMode = spec.ModeTunnel
	m, _ = newModel(c, "")
	if strings.Contains(mustJSON(m.policy(roleNodes)), "ec2:") {
		t.Error("tunnel mode grants EC2 permissions")
	}
}

func TestKubeconfigWaitsForTheControlPlane(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	if _, err := e.p.Kubeconfig(ctx, e.c, 5*time.Millisecond); !errors.Is(err, ErrNoKubeconfig) {
		t.Errorf("no kubeconfig yet: %v", err)
	}
	e.cloud.PutObject("example-kubedirect-state", "clusters/prod/"+FileKubeconfig, []byte("apiVersion: v1\n"))
	// Published, but the load balancers' health checks have not passed yet.
	e.cloud.SetTargetHealth("initial")
	if _, err := e.p.Kubeconfig(ctx, e.c, 5*time.Millisecond); !errors.Is(err, ErrAPIUnhealthy) {
		t.Errorf("kubeconfig while the targets are not healthy: %v, want %v", err, ErrAPIUnhealthy)
	}
	e.cloud.SetTargetHealth("")
	b, err := e.p.Kubeconfig(ctx, e.c, time.Second)
	if err != nil || string(b) != "apiVersion: v1\n" {
		t.Errorf("kubeconfig: %q, %v", b, err)
	}
}

func TestNamesFitAWSLimits(t *testing.T) {
	long := strings.Repeat("a", 38) + "-b"
	n := NewNames(long, "bucket", "")
	for _, lb := range []string{n.LoadBalancer(), n.InternalLoadBalancer()} {
		if len(lb) > 32 || strings.Contains(lb, "--") {
			t.Errorf("load balancer name %q is invalid", lb)
		}
	}
	if n.LoadBalancer() == n.InternalLoadBalancer() {
		t.Error("the public and internal load balancers share a name")
	}
	if NewNames(long+"x", "b", "").LoadBalancer() == n.LoadBalancer() {
		t.Error("shortened names collide")
	}
	if got := NewNames("prod", "b", "").StateKey(FileSpec); got != "prod/spec.yaml" {
		t.Errorf("state key without prefix: %q", got)
	}
	if got := NewNames("prod", "b", "a/b").StateStore(); got != "s3://b/a/b/prod/" {
		t.Errorf("state store: %q", got)
	}
}

func TestCarveSubnets(t *testing.T) {
	got, err := carveSubnets("10.0.0.0/24", []string{"x1a", "x1b", "x1c"})
	if err != nil {
		t.Fatal(err)
	}
	if got["x1a"] != "10.0.0.0/28" || got["x1c"] != "10.0.0.32/28" {
		t.Errorf("subnets %v", got)
	}
	if arch("t4g.medium") != "arm64" || arch("m7gd.large") != "arm64" || arch("g4dn.xlarge") != "amd64" || arch("t3.large") != "amd64" {
		t.Error("wrong architecture of an instance type")
	}
}

var testTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestConcurrentRunIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.cloud.PutObject("example-kubedirect-state", "clusters/prod/"+FileLock, []byte(`{"holder":"other-host pid 7","since":"2026-01-01T00:00:00Z"}`))
	_, err := e.p.Create(ctx, e.c)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "other-host pid 7") {
		t.Errorf("create while locked: %v", err)
	}
	if e.cloud.Count("VPC") != 0 {
		t.Error("create changed the account while another run held the lock")
	}
	if _, err := e.p.Delete(ctx, e.c); !errors.Is(err, ErrLocked) {
		t.Errorf("delete while locked: %v", err)
	}
	e.cloud.DeleteObject("example-kubedirect-state", "clusters/prod/"+FileLock)
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	if e.cloud.Object("example-kubedirect-state", "clusters/prod/"+FileLock) != nil {
		t.Error("create did not release the lock")
	}
}

func TestMissingExistingVPCIsReported(t *testing.T) {
	e := newEnv(t)
	e.c.Spec.AWS.VPCID = "vpc-0123456789abcdef0"
	_, err := e.p.Create(context.Background(), e.c)
	if err == nil || !strings.Contains(err.Error(), "vpc-0123456789abcdef0 does not exist in region eu-west-1") {
		t.Errorf("create with a missing VPC: %v", err)
	}
	if n := e.cloud.Calls("DescribeVpcs"); n != 1 {
		t.Errorf("looked for the VPC %d times, want once (absence is not eventual consistency)", n)
	}
}

func TestDuplicateTaggedResourcesAreRefused(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	_, _ = e.cloud.EC2().CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: awssdk.String("172.20.0.0/16"), TagSpecifications: tagSpec(ec2types.ResourceTypeVpc, e.p.mustModel(t, e.c).tags("kubedirect-prod"))})
	if _, err := e.p.Plan(ctx, e.c); err == nil || !strings.Contains(err.Error(), "2 carry the cluster's tags") {
		t.Errorf("plan with two tagged VPCs: %v", err)
	}
}

func (p *Provider) mustModel(t *testing.T, c *spec.Cluster) *model {
	t.Helper()
	m, err := newModel(c, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
