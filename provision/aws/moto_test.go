package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
)

// The TestMoto... tests run the provider, through the real aws-sdk-go-v2 clients, against moto (an
// AWS emulator: python3.11 -m moto.server) on a free loopback port. Moto enforces IAM from the moment
// the setup is done: the provider runs as a user holding exactly the operator policy UserPolicy
// publishes, so a call whose action the policy lacks fails. They skip only when moto is not installed
// (`make test` tries to install it).

// motoServer is the moto process the TestMoto... tests share; the first test that needs it starts it,
// TestMain stops it.
type motoServer struct {
	url      string
	cmd      *exec.Cmd
	dir      string
	admin    awssdk.CredentialsProvider
	operator awssdk.CredentialsProvider
	skip     string
	err      error
}

var (
	motoOnce sync.Once
	motoSrv  *motoServer
)

// requireMoto returns the running moto server, starting it on first use, or skips the test when
// moto is not installed.
func requireMoto(t *testing.T) *motoServer {
	t.Helper()
	motoOnce.Do(func() { motoSrv = startMoto() })
	if motoSrv.skip != "" {
		t.Skip(motoSrv.skip)
	}
	if motoSrv.err != nil {
		t.Fatalf("moto: %v", motoSrv.err)
	}
	return motoSrv
}

// stopMoto kills the moto server by its pid, if one was started.
func stopMoto() {
	if motoSrv == nil {
		return
	}
	if motoSrv.cmd != nil && motoSrv.cmd.Process != nil {
		_ = syscall.Kill(-motoSrv.cmd.Process.Pid, syscall.SIGKILL)
		_ = motoSrv.cmd.Wait()
	}
	if motoSrv.dir != "" {
		_ = os.RemoveAll(motoSrv.dir)
	}
}

// motoAMIs are the images moto offers: Canonical's Ubuntu 24.04 server images for both architectures
// and an image of another owner with a matching name, which create must not pick. (No creation_date:
// moto 5.2.1 parses the file's dates once per region and fails on the second.)
const motoAMIs = `[
 {"ami_id": "ami-0bbbbbbbbbbbbbb01", "state": "available", "public": true, "owner_id": "111122223333", "image_location": "someone/ubuntu", "root_device_type": "ebs", "root_device_name": "/dev/sda1", "description": "not Canonical's", "image_type": "machine", "architecture": "x86_64", "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-29991231", "virtualization_type": "hvm", "hypervisor": "xen"},
 {"ami_id": "ami-0aaaaaaaaaaaaaa02", "state": "available", "public": true, "owner_id": "099720109477", "image_location": "amazon/ubuntu", "root_device_type": "ebs", "root_device_name": "/dev/sda1", "description": "Canonical, Ubuntu, 24.04, amd64 noble image", "image_type": "machine", "architecture": "x86_64", "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251101", "virtualization_type": "hvm", "hypervisor": "xen"},
 {"ami_id": "ami-0aaaaaaaaaaaaaa03", "state": "available", "public": true, "owner_id": "099720109477", "image_location": "amazon/ubuntu", "root_device_type": "ebs", "root_device_name": "/dev/sda1", "description": "Canonical, Ubuntu, 24.04, arm64 noble image", "image_type": "machine", "architecture": "arm64", "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20251101", "virtualization_type": "hvm", "hypervisor": "xen"}
]`

// canonicalUbuntuAMI is the image create must choose for amd64 from motoAMIs.
const canonicalUbuntuAMI = "ami-0aaaaaaaaaaaaaa02"

// motoMain runs moto's server and ends it when the test process is gone, even if that one died
// without stopping it.
const motoMain = `
import os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
main(sys.argv[1:])
`

func startMoto() *motoServer {
	s := &motoServer{}
	if out, err := exec.Command("python3.11", "-c", "import moto").CombinedOutput(); err != nil {
		lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
		s.skip = fmt.Sprintf("moto is not installed for python3.11 (python3.11 -c 'import moto': %v: %s); `make test` tries to install it with pip", err, lines[len(lines)-1])
		return s
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.err = err
		return s
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	if s.dir, err = os.MkdirTemp("", "kubedirect-moto-"); err != nil {
		s.err = err
		return s
	}
	amis := filepath.Join(s.dir, "amis.json")
	if err := os.WriteFile(amis, []byte(motoAMIs), 0o600); err != nil {
		s.err = err
		return s
	}
	s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.cmd = exec.Command("python3.11", "-c", motoMain, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	// Moto reads no AWS configuration of this machine; the images are ours.
	s.cmd.Env = append(os.Environ(), "MOTO_AMIS_PATH="+amis)
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if log, err := os.Create(filepath.Join(s.dir, "moto.log")); err == nil {
		s.cmd.Stdout, s.cmd.Stderr = log, log
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.err = fmt.Errorf("start moto: %w", err)
		return s
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := loopbackHTTP.Get(s.url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			s.err = fmt.Errorf("moto did not answer on %s within 30s: %w", s.url, err)
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.setup(); err != nil {
		s.err = err
	}
	return s
}

// setup, while moto does not enforce IAM yet, makes an administrator for the tests' own setup, the
// operator with the published policy, and the state-store bucket; then it turns enforcement on.
func (s *motoServer) setup() error {
	ctx := context.Background()
	boot := s.clients(credentials.NewStaticCredentialsProvider("AKIDBOOTSTRAP", "bootstrap", ""), nil)
	var err error
	if s.admin, err = s.user(ctx, boot.IAM.(*iam.Client), "kubedirect-test-admin", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`); err != nil {
		return err
	}
	doc, err := motoOperatorPolicy(scenarioBucket, "")
	if err != nil {
		return err
	}
	if s.operator, err = s.user(ctx, boot.IAM.(*iam.Client), "kubedirect-test-operator", doc); err != nil {
		return err
	}
	_, err = boot.S3.(motoS3).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: awssdk.String(scenarioBucket),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraintEuWest1}})
	if err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	resp, err := loopbackHTTP.Post(s.url+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil {
		return fmt.Errorf("turn on moto's IAM enforcement: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("turn on moto's IAM enforcement: %s", resp.Status)
	}
	return nil
}

// user makes an IAM user with policy as a managed policy (an operator's policy is too long for an
// inline one) and returns its access key.
func (s *motoServer) user(ctx context.Context, cl *iam.Client, name, policy string) (awssdk.CredentialsProvider, error) {
	if _, err := cl.CreateUser(ctx, &iam.CreateUserInput{UserName: awssdk.String(name)}); err != nil {
		return nil, fmt.Errorf("create user %s: %w", name, err)
	}
	p, err := cl.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: awssdk.String(name), PolicyDocument: awssdk.String(policy)})
	if err != nil {
		return nil, fmt.Errorf("create policy %s: %w", name, err)
	}
	if _, err := cl.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: awssdk.String(name), PolicyArn: p.Policy.Arn}); err != nil {
		return nil, fmt.Errorf("attach policy %s: %w", name, err)
	}
	k, err := cl.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: awssdk.String(name)})
	if err != nil {
		return nil, fmt.Errorf("create access key of %s: %w", name, err)
	}
	return credentials.NewStaticCredentialsProvider(awssdk.ToString(k.AccessKey.AccessKeyId), awssdk.ToString(k.AccessKey.SecretAccessKey), ""), nil
}

// motoOperatorPolicy is UserPolicy(bucket) without the action drop, as moto can evaluate it. Moto
// evaluates an IAM call against the ARN of the role it names only when the role already exists, and
// against "*" otherwise (CreateRole, CreateInstanceProfile), which a statement limited to
// kubedirect-* never matches: the statement for the node roles gets Resource "*" here. Every other
// statement is as published; moto checks S3 calls against the bucket and key.
func motoOperatorPolicy(bucket, drop string) (string, error) {
	b, err := UserPolicy(bucket)
	if err != nil {
		return "", err
	}
	var doc policyDocument
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", err
	}
	for i := range doc.Statement {
		st := &doc.Statement[i]
		if st.Sid == "NodeRoles" {
			st.Resource = stringList{"*"}
		}
		st.Action = slices.DeleteFunc(st.Action, func(a string) bool { return a == drop })
	}
	return mustJSON(doc), nil
}

// loopbackHTTP is the HTTP client of every moto test: it refuses to connect anywhere but loopback, so
// no test can reach AWS whatever an SDK resolves.
var loopbackHTTP = &http.Client{Transport: &http.Transport{
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("test refuses to connect to %s: only loopback is allowed", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	},
}, Timeout: 60 * time.Second}

// clients are real SDK clients talking to moto with creds; rec, if not nil, sees every call.
func (s *motoServer) clients(creds awssdk.CredentialsProvider, rec *callRecorder) *Clients {
	u, err := url.Parse(s.url)
	if err != nil || !net.ParseIP(u.Hostname()).IsLoopback() {
		panic("moto endpoint is not loopback: " + s.url)
	}
	cfg := awssdk.Config{Region: "eu-west-1", Credentials: creds, BaseEndpoint: awssdk.String(s.url), HTTPClient: loopbackHTTP, RetryMaxAttempts: 3}
	if rec != nil {
		cfg.APIOptions = append(cfg.APIOptions, rec.middleware)
	}
	return &Clients{
		EC2: ec2.NewFromConfig(cfg), IAM: iam.NewFromConfig(cfg), AutoScaling: autoscaling.NewFromConfig(cfg), ELB: elb.NewFromConfig(cfg),
		S3: motoS3{s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })}, STS: sts.NewFromConfig(cfg),
	}
}

// motoS3 lists by a prefix without "/" and keeps the keys under the one asked for: moto 5.2.1 checks
// the signature of a ListObjectsV2 whose prefix holds a "/" against the query with the slash
// unescaped, where the SDK (as AWS) signs it escaped, and refuses it. What the provider sees is the
// same.
type motoS3 struct{ *s3.Client }

func (c motoS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	want := awssdk.ToString(in.Prefix)
	head, _, _ := strings.Cut(want, "/")
	q := *in
	q.Prefix = awssdk.String(head)
	out, err := c.Client.ListObjectsV2(ctx, &q, opts...)
	if err != nil {
		return nil, err
	}
	out.Contents = slices.DeleteFunc(out.Contents, func(o s3types.Object) bool { return !strings.HasPrefix(awssdk.ToString(o.Key), want) })
	out.Prefix = in.Prefix
	return out, nil
}

// middleware records each call's operation and fails the ones to interrupt before they are sent.
func (r *callRecorder) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("kubedirect-test-recorder",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if err := r.record(awsmiddleware.GetOperationName(ctx)); err != nil {
				return middleware.InitializeOutput{}, middleware.Metadata{}, err
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// motoAccount is moto as an account of the scenario suite, used with the operator's credentials.
func motoAccount(s *motoServer) *account {
	rec := &callRecorder{calls: map[string]int{}, interrupts: map[string]int{}}
	return &account{clients: s.clients(s.operator, rec), mutations: rec.mutations, interruptAt: rec.interruptAt, poll: 50 * time.Millisecond}
}

// TestMotoScenarios runs the scenario suite against moto, as the operator.
func TestMotoScenarios(t *testing.T) {
	s := requireMoto(t)
	a := motoAccount(s)
	start := time.Now()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			begin := time.Now()
			sc.run(t, a, "m-"+strings.ToLower(sc.name))
			t.Logf("%s against moto: %s", sc.name, time.Since(begin).Round(time.Millisecond))
		})
	}
	t.Logf("scenario suite against moto: %s", time.Since(start).Round(time.Millisecond))
}

// TestMotoCreateUsesCanonicalsUbuntuImage: the nodes run Canonical's Ubuntu 24.04 image, not another
// owner's image of the same name.
func TestMotoCreateUsesCanonicalsUbuntuImage(t *testing.T) {
	s := requireMoto(t)
	a := motoAccount(s)
	c := scenarioCluster(t, "m-image")
	p := a.provider()
	ctx := context.Background()
	if _, err := p.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := p.Delete(ctx, c); err != nil {
			t.Errorf("delete: %v", err)
		}
	}()
	out, err := a.clients.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{filter("tag:"+TagCluster, "m-image"), filter("instance-state-name", "running")}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			n++
			if got := awssdk.ToString(i.ImageId); got != canonicalUbuntuAMI {
				t.Errorf("instance %s runs %s, want Canonical's Ubuntu 24.04 image %s", awssdk.ToString(i.InstanceId), got, canonicalUbuntuAMI)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d instances running, want 4", n)
	}
}

var lackingUsers atomic.Int32

// TestMotoOperatorPolicyIsEnforced: an operator whose policy lacks one action the provider needs
// cannot create the cluster, and the error says a permission is missing.
func TestMotoOperatorPolicyIsEnforced(t *testing.T) {
	s := requireMoto(t)
	ctx := context.Background()
	// An action of the last resources made, so the whole run goes through moto's checks first.
	const drop = "ec2:CreateLaunchTemplate"
	admin := s.clients(s.admin, nil)
	doc, err := motoOperatorPolicy(scenarioBucket, drop)
	if err != nil {
		t.Fatal(err)
	}
	// A new user each run: -count=N runs this test N times against the same moto.
	lacking, err := s.user(ctx, admin.IAM.(*iam.Client), fmt.Sprintf("kubedirect-test-lacking-%d", lackingUsers.Add(1)), doc)
	if err != nil {
		t.Fatal(err)
	}
	rec := &callRecorder{calls: map[string]int{}, interrupts: map[string]int{}}
	a := &account{clients: s.clients(lacking, rec), mutations: rec.mutations, interruptAt: rec.interruptAt, poll: 50 * time.Millisecond}
	c := scenarioCluster(t, "m-lacking")
	_, err = a.provider().Create(ctx, c)
	if err == nil || !isCode(err, "AccessDenied", "UnauthorizedOperation") || !strings.Contains(err.Error(), "lacks a permission") || !strings.Contains(err.Error(), "LaunchTemplate kubedirect-m-lacking-control-plane") {
		t.Errorf("create without %s: %v, want a refusal naming the launch template and a missing permission", drop, err)
	}
	// The operator with the whole policy removes what was made.
	if _, err := motoAccount(s).provider().Delete(ctx, c); err != nil {
		t.Errorf("delete: %v", err)
	}
}

// TestMotoEndpointIsLoopback: the clients of the moto tests cannot reach anything but loopback.
func TestMotoEndpointIsLoopback(t *testing.T) {
	_, err := loopbackHTTP.Get("http://192.0.2.1:80/")
	if err == nil || !strings.Contains(err.Error(), "only loopback is allowed") {
		t.Errorf("a non-loopback request: %v, want it refused before any packet leaves", err)
	}
}
