// Command rehearsal plays EC2's machines for `make e2e-aws` (hack/e2e-aws.sh), where the real
// `kubedirect create cluster` builds an AWS cluster against moto:
//
//	rehearsal nodes   -moto URL -imds ADDR -cluster NAME -network NET -image IMAGE -hosts FILE -logs DIR
//	rehearsal bucket  -moto URL -bucket NAME -region REGION
//	rehearsal census  -moto URL -cluster NAME -bucket NAME -prefix PREFIX
//
// nodes serves an IMDSv2 stand-in on ADDR and, for every instance moto's auto scaling groups of the
// cluster launched, starts a container of the offline node image on the Docker network NET and runs
// in it the instance's own user-data from its launch template (read through the IMDS stand-in, as
// cloud-init does) without the package installation, which the node image already satisfies. It
// appends the API load balancers' names, with the first control plane's address, to FILE (the
// /etc/hosts the CLI sees) and to every node's /etc/hosts: moto invents the names; nothing resolves
// them. bucket makes the state-store bucket (the operator's one-time setup). census lists what in moto
// still carries the cluster's tag and exits 1 when anything does.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	kdaws "github.com/kubedirect/kubedirect/provision/aws"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rehearsal nodes|bucket|census FLAGS")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "nodes":
		err = runNodes(ctx, os.Args[2:])
	case "bucket":
		err = runBucket(ctx, os.Args[2:])
	case "census":
		err = runCensus(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatalf("rehearsal %s: %v", os.Args[1], err)
	}
}

// clients talk to moto at url as the operator (moto does not enforce IAM in the rehearsal).
type clients struct {
	ec2 *ec2.Client
	asg *autoscaling.Client
	elb *elb.Client
	iam *iam.Client
	s3  *s3.Client
}

func newClients(url, region string) *clients {
	cfg := awssdk.Config{Region: region, BaseEndpoint: awssdk.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDREHEARSAL", "rehearsal", "")}
	return &clients{ec2: ec2.NewFromConfig(cfg), asg: autoscaling.NewFromConfig(cfg), elb: elb.NewFromConfig(cfg),
		iam: iam.NewFromConfig(cfg), s3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })}
}

func runBucket(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bucket", flag.ExitOnError)
	url := fs.String("moto", "", "moto's URL")
	bucket := fs.String("bucket", "", "bucket name")
	region := fs.String("region", "eu-west-1", "region")
	_ = fs.Parse(args)
	cl := newClients(*url, *region)
	_, err := cl.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: awssdk.String(*bucket),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(*region)}})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", *bucket, err)
	}
	return nil
}

// node is one instance's container.
type node struct {
	inst      *instance
	container string
	cfg       *kdaws.NodeConfig
}

// launcher starts a container for each instance moto launched.
type launcher struct {
	cl                           *clients
	cluster, network, image      string
	hostsFile, logs, imdsURL, s3 string
	imds                         *imds
	nodes                        map[string]*node // by instance ID
	apiIP                        string           // the first control plane's address
	apiContainer                 string           // the first control plane's container
	apiNames                     []string
}

func runNodes(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nodes", flag.ExitOnError)
	url := fs.String("moto", "", "moto's URL (reachable from the node containers)")
	addr := fs.String("imds", "", "address the IMDS stand-in listens on (reachable from the node containers)")
	l := &launcher{nodes: map[string]*node{}, imds: newIMDS()}
	fs.StringVar(&l.cluster, "cluster", "", "cluster name")
	fs.StringVar(&l.network, "network", "", "Docker network of the node containers")
	fs.StringVar(&l.image, "image", "", "node image")
	fs.StringVar(&l.hostsFile, "hosts", "", "hosts file of the CLI, to append the API's names to")
	fs.StringVar(&l.logs, "logs", "", "directory for each node's bootstrap log")
	region := fs.String("region", "eu-west-1", "region")
	_ = fs.Parse(args)
	l.cl = newClients(*url, *region)
	l.imdsURL, l.s3 = "http://"+*addr, *url
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen for IMDS: %w", err)
	}
	srv := &http.Server{Handler: l.imds, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	log.Printf("IMDS stand-in on %s; watching moto %s for instances of %s", *addr, *url, l.cluster)
	for {
		if err := l.poll(ctx, *region); err != nil {
			log.Printf("poll: %v", err)
		}
		if err := l.initializeNodes(ctx); err != nil {
			log.Printf("initialize nodes: %v", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// poll starts containers for new instances: control planes first, workers once the API's address is
// known (their /etc/hosts needs it).
func (l *launcher) poll(ctx context.Context, region string) error {
	out, err := l.cl.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		Filters: []astypes.Filter{{Name: awssdk.String("tag:" + kdaws.TagCluster), Values: []string{l.cluster}}}})
	if err != nil {
		return fmt.Errorf("describe auto scaling groups: %w", err)
	}
	var pending []*node
	for _, g := range out.AutoScalingGroups {
		var ids []string
		for _, i := range g.Instances {
			if l.nodes[awssdk.ToString(i.InstanceId)] == nil && i.LifecycleState == astypes.LifecycleStateInService {
				ids = append(ids, awssdk.ToString(i.InstanceId))
			}
		}
		if len(ids) == 0 || g.LaunchTemplate == nil {
			continue
		}
		ud, profile, err := l.launchTemplate(ctx, g.LaunchTemplate)
		if err != nil {
			return err
		}
		cfg, err := nodeConfig(ud)
		if err != nil {
			return fmt.Errorf("group %s: %w", awssdk.ToString(g.AutoScalingGroupName), err)
		}
		desc, err := l.cl.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
		if err != nil {
			return fmt.Errorf("describe instances: %w", err)
		}
		for _, r := range desc.Reservations {
			for _, i := range r.Instances {
				// moto leaves the instance profile of an auto scaling group's instances out; EC2 gives
				// them the launch template's, whose name is its role's.
				role := profile
				if i.IamInstanceProfile != nil {
					arn := awssdk.ToString(i.IamInstanceProfile.Arn)
					role = arn[strings.LastIndex(arn, "/")+1:]
				}
				id := awssdk.ToString(i.InstanceId)
				pending = append(pending, &node{cfg: cfg, container: "kd-rehearsal-" + id, inst: &instance{
					ID: id, Zone: awssdk.ToString(i.Placement.AvailabilityZone), Region: region, Role: role, UserData: ud}})
			}
		}
	}
	for _, cp := range []bool{true, false} {
		for _, n := range pending {
			if n.cfg.ControlPlane != cp || (!cp && l.apiIP == "") {
				continue
			}
			if err := l.start(ctx, n); err != nil {
				return fmt.Errorf("start node %s: %w", n.inst.ID, err)
			}
		}
	}
	return nil
}

// uninitializedTaint is what kubelet --cloud-provider=external puts on its Node until a cloud
// controller manager has initialised it.
const uninitializedTaint = "node.cloudprovider.kubernetes.io/uninitialized"

// cloudController is the DaemonSet of manifests/charts/aws-cloud-controller-manager.
const cloudController = "aws-cloud-controller-manager"

// initializeNodes plays aws-cloud-controller-manager, which cannot run here (its image cannot be
// pulled, and moto's instances are not the containers): it removes the controller's DaemonSet, whose
// pods would never start, and does for Nodes registered with kubelet --cloud-provider=external what
// the controller's node controller does: the provider ID where kubelet set none, the addresses
// (InternalIP and ExternalIP the container's), then the taint removed. Nodes with addresses and
// without the taint are left alone.
func (l *launcher) initializeNodes(ctx context.Context) error {
	if l.apiContainer == "" {
		return nil
	}
	kubectl := []string{"exec", l.apiContainer, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"}
	out, err := output(ctx, "docker", append(kubectl, "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name}{"|"}{.spec.providerID}{"|"}{.spec.taints[*].key}{"|"}{.status.addresses[*].type}{"\n"}{end}`)...)
	if err != nil {
		return nil // the API is not up yet
	}
	if ds, _ := output(ctx, "docker", append(kubectl, "-n", "kube-system", "get", "daemonset", cloudController, "--ignore-not-found", "-o", "name")...); ds != "" {
		if _, err := output(ctx, "docker", append(kubectl, "-n", "kube-system", "delete", "daemonset", cloudController, "--wait=false")...); err != nil {
			return err
		}
		log.Printf("removed daemonset %s: its image cannot be pulled here; the rehearsal initialises the Nodes", cloudController)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 4 || !strings.Contains(f[2], uninitializedTaint) && strings.Contains(f[3], "InternalIP") {
			continue
		}
		name := f[0]
		for _, n := range l.nodes {
			if strings.SplitN(n.inst.Hostname, ".", 2)[0] != strings.SplitN(name, ".", 2)[0] {
				continue
			}
			if !strings.HasPrefix(f[1], "aws://") {
				patch := fmt.Sprintf(`{"spec":{"providerID":"aws:///%s/%s"}}`, n.inst.Zone, n.inst.ID)
				if _, err := output(ctx, "docker", append(kubectl, "patch", "node", name, "-p", patch)...); err != nil {
					return err
				}
			}
			// kubelet --cloud-provider=external leaves the addresses to the controller.
			addrs := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q},{"type":"ExternalIP","address":%q},{"type":"InternalDNS","address":%q},{"type":"Hostname","address":%q}]}}`,
				n.inst.IP, n.inst.IP, n.inst.Hostname, n.inst.Hostname)
			if _, err := output(ctx, "docker", append(kubectl, "patch", "node", name, "--subresource=status", "--type=merge", "-p", addrs)...); err != nil {
				return err
			}
			if strings.Contains(f[2], uninitializedTaint) {
				if _, err := output(ctx, "docker", append(kubectl, "taint", "node", name, uninitializedTaint+"-")...); err != nil {
					return err
				}
			}
			log.Printf("node %s (%s): addresses set, %s taint removed (the cloud controller manager's part)", name, n.inst.ID, uninitializedTaint)
		}
	}
	return nil
}

// launchTemplate returns the user-data and the instance profile's name of a launch template version.
func (l *launcher) launchTemplate(ctx context.Context, lt *astypes.LaunchTemplateSpecification) ([]byte, string, error) {
	v := awssdk.ToString(lt.Version)
	if v == "" {
		v = "$Default"
	}
	out, err := l.cl.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: lt.LaunchTemplateId, LaunchTemplateName: lt.LaunchTemplateName, Versions: []string{v}})
	if err != nil {
		return nil, "", fmt.Errorf("describe launch template %s: %w", awssdk.ToString(lt.LaunchTemplateId), err)
	}
	if len(out.LaunchTemplateVersions) == 0 || out.LaunchTemplateVersions[0].LaunchTemplateData == nil {
		return nil, "", fmt.Errorf("launch template %s has no version %s", awssdk.ToString(lt.LaunchTemplateId), v)
	}
	d := out.LaunchTemplateVersions[0].LaunchTemplateData
	profile := ""
	if d.IamInstanceProfile != nil {
		profile = awssdk.ToString(d.IamInstanceProfile.Name)
	}
	ud, err := base64.StdEncoding.DecodeString(awssdk.ToString(d.UserData))
	return ud, profile, err
}

// nodeConfig is the bootstrap.json the user-data writes.
func nodeConfig(ud []byte) (*kdaws.NodeConfig, error) {
	_, rest, ok := bytes.Cut(ud, []byte("/etc/kubedirect/bootstrap.json <<'JSON'\n"))
	doc, _, ok2 := bytes.Cut(rest, []byte("\nJSON\n"))
	if !ok || !ok2 {
		return nil, errors.New("user-data writes no /etc/kubedirect/bootstrap.json")
	}
	var c kdaws.NodeConfig
	if err := json.Unmarshal(doc, &c); err != nil {
		return nil, fmt.Errorf("decode bootstrap.json of the user-data: %w", err)
	}
	return &c, nil
}

// start runs the instance's container, registers it with the IMDS stand-in and starts its user-data.
func (l *launcher) start(ctx context.Context, n *node) error {
	// What a kind node gets (kind's docker provider): systemd as PID 1 on a tty, /var a volume.
	_, _ = exec.CommandContext(ctx, "docker", "rm", "-f", "-v", n.container).CombinedOutput()
	if out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--name", n.container, "--network", l.network,
		"--privileged", "--cgroupns=private", "--tty", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
		"-v", "/var", "--label", "kubedirect.io/rehearsal="+l.cluster, l.image).CombinedOutput(); err != nil {
		return fmt.Errorf("docker run: %w: %s", err, out)
	}
	ip, err := output(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", n.container)
	if err != nil {
		return err
	}
	n.inst.IP = ip
	n.inst.Hostname = "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + n.inst.Region + ".compute.internal"
	l.imds.add(n.inst)
	l.nodes[n.inst.ID] = n
	if n.cfg.ControlPlane && l.apiIP == "" {
		l.apiIP, l.apiContainer, l.apiNames = ip, n.container, []string{n.cfg.APIEndpoint, n.cfg.PublicAPIEndpoint}
		f, err := os.OpenFile(l.hostsFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		// Appended in place: the CLI's mount namespace has this very file bind-mounted on /etc/hosts.
		_, err = fmt.Fprintf(f, "%s %s\n", ip, strings.Join(l.apiNames, " "))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	log.Printf("instance %s (%s, control plane %v): container %s at %s", n.inst.ID, n.cfg.NodeGroup, n.cfg.ControlPlane, n.container, ip)
	go l.boot(context.WithoutCancel(ctx), n)
	return nil
}

// boot prepares the machine as EC2 would have and runs the user-data in the container.
func (l *launcher) boot(ctx context.Context, n *node) {
	logPath := filepath.Join(l.logs, n.container+".log")
	f, err := os.Create(logPath)
	if err != nil {
		log.Printf("%s: %v", n.container, err)
		return
	}
	defer f.Close()
	// Every AWS call of the node goes to moto (S3 for the state store, EC2 for the source/destination
	// check), and IMDS to the stand-in: for the user-data, the bootstrap and the node's timers.
	envs := []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + l.imdsURL, "AWS_ENDPOINT_URL=" + l.s3, "AWS_ENDPOINT_URL_S3=" + l.s3}
	env := strings.Join(envs, " ")
	script := fmt.Sprintf(bootScript, n.inst.Hostname, strings.SplitN(n.inst.Hostname, ".", 2)[0],
		l.apiIP, strings.Join(l.apiNames, " "), env, l.imdsURL, l.imdsURL, packageStart, packageEnd)
	args := []string{"exec"}
	for _, e := range envs {
		args = append(args, "-e", e)
	}
	cmd := exec.CommandContext(ctx, "docker", append(args, n.container, "bash", "-c", script)...)
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	if err := cmd.Run(); err != nil {
		log.Printf("%s: bootstrap failed after %s: %v (log %s)", n.container, time.Since(start).Round(time.Second), err, logPath)
		return
	}
	log.Printf("%s: bootstrap done in %s", n.container, time.Since(start).Round(time.Second))
}

// The user-data's package installation, which the rehearsal leaves out: from the first marker up to
// (not including) the second. Both are comments of provision/aws/templates/userdata.sh.tmpl.
const (
	packageStart = "# containerd, with the systemd cgroup driver"
	packageEnd   = "# The kubedirect binary"
)

// bootScript runs in the node container: what EC2 and the AMI would have set up (host name, systemd
// told where IMDS and S3 are for the node's timers, the modules index of a kernel whose modules are
// built in), then the user-data as cloud-init runs it, read from IMDS, without the package section.
const bootScript = `set -euo pipefail
until [ "$(systemctl is-system-running 2>/dev/null)" = running ] || systemctl is-active -q multi-user.target 2>/dev/null; do sleep 1; done
hostname %[1]s
echo %[2]s > /etc/hostname
echo "%[3]s %[4]s" >> /etc/hosts
systemctl set-environment %[5]s
kdir=/lib/modules/$(uname -r)
if [ ! -e "$kdir/modules.builtin" ]; then
  mkdir -p "$kdir"
  config=$(zcat /proc/config.gz)
  grep -qx 'CONFIG_OVERLAY_FS=y' <<<"$config" && echo kernel/fs/overlayfs/overlay.ko >>"$kdir/modules.builtin"
  grep -qx 'CONFIG_BRIDGE_NETFILTER=y' <<<"$config" && echo kernel/net/bridge/br_netfilter.ko >>"$kdir/modules.builtin"
  touch "$kdir/modules.order"
  depmod
fi
tok=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' %[6]s/latest/api/token)
curl -sf -H "X-aws-ec2-metadata-token: $tok" %[7]s/latest/user-data > /var/lib/cloud-user-data.sh
grep -qF '%[8]s' /var/lib/cloud-user-data.sh && grep -qF '%[9]s' /var/lib/cloud-user-data.sh ||
  { echo "rehearsal: the user-data's package section markers are gone; update hack/rehearsal"; exit 1; }
sed '/^%[8]s/,/^%[9]s/{/^%[9]s/!d}' /var/lib/cloud-user-data.sh > /var/lib/cloud-user-data-rehearsal.sh
echo "rehearsal: running the user-data without its package section (the node image has containerd, kubelet, kubeadm)"
exec bash /var/lib/cloud-user-data-rehearsal.sh
`

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
