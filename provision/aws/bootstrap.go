package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// NodeConfig is what user-data tells `kubedirect node bootstrap` (as /etc/kubedirect/bootstrap.json):
// nothing secret; the CA and the join token come from the state store with the instance's role.
type NodeConfig struct {
	Cluster           string `json:"cluster"`
	NodeGroup         string `json:"nodeGroup"`
	ControlPlane      bool   `json:"controlPlane"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Region            string `json:"region"`
	// StateStore is the spec's s3://bucket[/prefix].
	StateStore string `json:"stateStore"`
	// APIEndpoint is the internal API load balancer (what nodes use), PublicAPIEndpoint the
	// internet-facing one (what the operator uses); host names without port.
	APIEndpoint       string `json:"apiEndpoint"`
	PublicAPIEndpoint string `json:"publicAPIEndpoint"`
	PodCIDR           string `json:"podCIDR"`
	ServiceCIDR       string `json:"serviceCIDR"`
	DSR               bool   `json:"dsr"`
	Arch              string `json:"arch"`
}

// Paths on a node.
const (
	NodeConfigPath    = "/etc/kubedirect/bootstrap.json"
	KubeletKubeconfig = "/etc/kubernetes/kubelet.conf"
	kubeadmConfigPath = "/etc/kubernetes/kubeadm.yaml"
	pkiDir            = "/etc/kubernetes/pki"
	systemdDir        = "/etc/systemd/system"
)

// LoadNodeConfig reads the node's bootstrap configuration.
func LoadNodeConfig(path string) (*NodeConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	var c NodeConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode node config %s: %w", path, err)
	}
	return &c, nil
}

// Identity is what the node learns about itself from the instance metadata service (IMDSv2).
type Identity struct {
	InstanceID string
	PrivateIP  string
	// Hostname is the private DNS name (ip-10-0-0-1.eu-west-1.compute.internal), lower case: the Node's
	// name, as aws-cloud-controller-manager requires.
	Hostname string
	PublicIP string // the public IPv4 address, "" without one
	Zone     string // the availability zone, part of the providerID
}

// ProviderID is the Node's spec.providerID as aws-cloud-controller-manager writes and reads it.
func (id *Identity) ProviderID() string { return "aws:///" + id.Zone + "/" + id.InstanceID }

// ReadIdentity asks IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT is honoured, as in the rehearsal).
func ReadIdentity(ctx context.Context, c *imds.Client) (*Identity, error) {
	get := func(path string) (string, error) {
		out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return "", fmt.Errorf("read instance metadata %s: %w", path, err)
		}
		defer out.Content.Close()
		b, err := io.ReadAll(out.Content)
		return strings.TrimSpace(string(b)), err
	}
	var id Identity
	var err error
	if id.InstanceID, err = get("instance-id"); err != nil {
		return nil, err
	}
	if id.PrivateIP, err = get("local-ipv4"); err != nil {
		return nil, err
	}
	if id.Hostname, err = get("local-hostname"); err != nil {
		return nil, err
	}
	if id.Zone, err = get("placement/availability-zone"); err != nil {
		return nil, err
	}
	// Not every instance has a public address: a missing one is no error.
	id.PublicIP, _ = get("public-ipv4")
	// IMDS may list several names; the first is the instance's own.
	id.Hostname = strings.ToLower(strings.Fields(id.Hostname + " ")[0])
	return &id, nil
}

// kubeadmNodeRegistration is the part of kubeadm's init and join configurations that registers this
// node: its name and the kubelet's flags.
var kubeadmNodeRegistration = template.Must(template.New("nodeRegistration").Parse(`nodeRegistration:
  name: "{{.NodeName}}"
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
    # aws-cloud-controller-manager initialises the Node (addresses, zone labels) and serves
    # type LoadBalancer; the providerID names this instance to it.
    - {name: cloud-provider, value: external}
    - {name: provider-id, value: "{{.ProviderID}}"}`))

var kubeadmInit = template.Must(template.Must(kubeadmNodeRegistration.Clone()).New("init").Parse(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
  - token: "{{.Token}}"
    ttl: "{{.TokenTTL}}"
    usages: [signing, authentication]
    groups: ["system:bootstrappers:kubeadm:default-node-token"]
localAPIEndpoint:
  advertiseAddress: "{{.NodeIP}}"
  bindPort: 6443
{{template "nodeRegistration" .}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: {{.C.Cluster}}
kubernetesVersion: {{.C.KubernetesVersion}}
controlPlaneEndpoint: "{{.C.APIEndpoint}}:6443"
apiServer:
  certSANs: ["{{.C.APIEndpoint}}", "{{.C.PublicAPIEndpoint}}"]
networking:
  podSubnet: {{.C.PodCIDR}}
  serviceSubnet: {{.C.ServiceCIDR}}
`))

var kubeadmJoin = template.Must(template.Must(kubeadmNodeRegistration.Clone()).New("join").Parse(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "{{.C.APIEndpoint}}:6443"
    token: "{{.Token}}"
    caCertHashes: ["{{.CAHash}}"]
{{- if .ControlPlane}}
controlPlane:
  localAPIEndpoint:
    advertiseAddress: "{{.NodeIP}}"
    bindPort: 6443
{{- end}}
{{template "nodeRegistration" .}}
`))

// kubeadmParams fill the kubeadm configuration templates.
type kubeadmParams struct {
	C            *NodeConfig
	ControlPlane bool
	Token        string
	TokenTTL     string
	CAHash       string
	NodeIP       string
	NodeName     string
	ProviderID   string
}

// KubeadmConfig renders the first control plane's InitConfiguration or the JoinConfiguration of
// another control plane or a worker. The shared key pairs (WriteSharedPKI) are on disk already: a
// joining control plane needs no certificate key.
func KubeadmConfig(c *NodeConfig, id *Identity, mode JoinMode, token, caHash string) ([]byte, error) {
	t := kubeadmJoin
	if mode == ModeInit {
		t = kubeadmInit
	}
	var buf bytes.Buffer
	// The token in the state store is valid as long as the store says (BootstrapTokenTTL), so that a
	// node added later still joins; kubeadm's TTL 0 would make it never expire.
	err := t.Execute(&buf, kubeadmParams{C: c, ControlPlane: mode == ModeJoinControlPlane, Token: token, TokenTTL: BootstrapTokenTTL.String(), CAHash: caHash, NodeIP: id.PrivateIP, NodeName: id.Hostname, ProviderID: id.ProviderID()})
	if err != nil {
		return nil, fmt.Errorf("render kubeadm configuration: %w", err)
	}
	return buf.Bytes(), nil
}

// BootstrapTokenTTL is the lifetime the control plane gives the join token it starts with.
const BootstrapTokenTTL = 24 * time.Hour

// TokenRenewInterval is how often the control plane replaces the join token in the state store; each
// token lives BootstrapTokenTTL, so the one in the store is always valid for a node joining later.
const TokenRenewInterval = 6 * time.Hour

// RenewToken makes a new join token valid for BootstrapTokenTTL with kubeadm on the control plane and
// writes it to the state store; the old one expires by itself.
func (n *Node) RenewToken(ctx context.Context, output func(ctx context.Context, name string, args ...string) ([]byte, error)) error {
	out, err := output(ctx, "kubeadm", "token", "create", "--ttl", BootstrapTokenTTL.String(), "--kubeconfig", "/etc/kubernetes/admin.conf")
	if err != nil {
		return fmt.Errorf("renew join token: %w", err)
	}
	token := strings.TrimSpace(string(out))
	if !tokenPattern.MatchString(token) {
		return fmt.Errorf("renew join token: kubeadm printed %q, not a token", token)
	}
	if err := (store{n.S3, n.Names}).put(ctx, FileToken, []byte(token)); err != nil {
		return fmt.Errorf("renew join token: %w", err)
	}
	n.Log.Info("renewed the join token", "ttl", BootstrapTokenTTL)
	return nil
}

var tokenPattern = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// nodeJob is a `kubedirect node` verb that systemd runs on a timer: a oneshot service and its timer.
type nodeJob struct {
	name  string // unit name without .service / .timer
	does  string // the service's description
	after string // the unit the service runs after
	verb  string // the `kubedirect node` verb
	every string // the timer's description
	timer string // the [Timer] section's lines
}

// units renders the job's service and timer units, by file name.
func (j nodeJob) units(into map[string]string) {
	into[j.name+".service"] = fmt.Sprintf(`[Unit]
Description=kubedirect: %s
After=%s

[Service]
Type=oneshot
ExecStart=/usr/local/bin/kubedirect node %s --config %s
`, j.does, j.after, j.verb, NodeConfigPath)
	into[j.name+".timer"] = fmt.Sprintf(`[Unit]
Description=kubedirect: %s

[Timer]
%s

[Install]
WantedBy=timers.target
`, j.every, j.timer)
}

// nodeJobUnits renders the units of jobs, by file name.
func nodeJobUnits(jobs ...nodeJob) map[string]string {
	units := map[string]string{}
	for _, j := range jobs {
		j.units(units)
	}
	return units
}

// controlPlaneTimers are the control plane's units that renew the join token and save etcd
// snapshots to the state store.
func controlPlaneTimers() map[string]string {
	return nodeJobUnits(
		nodeJob{name: "kubedirect-etcd-snapshot", after: "kubelet.service", verb: "etcd-snapshot",
			does:  "save an etcd snapshot in the state store (the etcd leader does; the others skip)",
			every: fmt.Sprintf("etcd snapshots, the newest %d kept", EtcdSnapshotsKept),
			timer: fmt.Sprintf("OnCalendar=%s\nRandomizedDelaySec=60", EtcdSnapshotSchedule)},
		nodeJob{name: "kubedirect-token", after: "kubelet.service", verb: "renew-token",
			does: "renew the join token in the state store", every: "renew the join token",
			timer: fmt.Sprintf("OnActiveSec=%ds\nOnUnitActiveSec=%ds", int(TokenRenewInterval.Seconds()), int(TokenRenewInterval.Seconds()))},
	)
}

// imageTimer are the systemd units that keep the node's kubedirect binary and self-image current.
func imageTimer() map[string]string {
	return nodeJobUnits(nodeJob{name: "kubedirect-image", after: "containerd.service", verb: "sync-image",
		does:  "install the binary in the state store and import its image into containerd",
		every: "keep the agent image current", timer: "OnBootSec=10s\nOnUnitActiveSec=20s"})
}

// Bootstrap turns a fresh instance into a node of the cluster: IMDSv2 for its identity, the state
// store for the shared key pairs (control plane), the join token and kubedirect's image, then
// kubeadm. The first control plane runs kubeadm init (without kube-proxy) and publishes the API's
// addresses and the CA (no credentials); the other control planes, and any that replaces one later,
// join as control planes (ControlPlaneMode); workers join. A node that has joined before (a reboot)
// only refreshes its image.
func (n *Node) Bootstrap(ctx context.Context, c *NodeConfig, run func(ctx context.Context, name string, args ...string) error) error {
	n.defaults()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(c.Region))
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	id, err := ReadIdentity(ctx, imds.NewFromConfig(cfg))
	if err != nil {
		return err
	}
	n.NodeName, n.PublicIP = id.Hostname, id.PublicIP
	n.Log.Info("bootstrapping node", "cluster", c.Cluster, "group", c.NodeGroup, "instance", id.InstanceID, "ip", id.PrivateIP)
	if c.DSR {
		// Replies leave this node with another node's address as source: EC2 must not drop them.
		_, err := ec2.NewFromConfig(cfg).ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{
			InstanceId: aws.String(id.InstanceID), SourceDestCheck: &ec2types.AttributeBooleanValue{Value: aws.Bool(false)}})
		if err != nil {
			return fmt.Errorf("turn off source/destination check of %s: %w", id.InstanceID, err)
		}
	}
	// The image before kubelet starts, so the agent's pod finds it.
	if _, err := n.SyncImage(ctx); err != nil {
		return err
	}
	for name, unit := range imageTimer() {
		if err := os.WriteFile(filepath.Join(systemdDir, name), []byte(unit), 0o644); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	if err := run(ctx, "systemctl", "enable", "--now", "kubedirect-image.timer"); err != nil {
		return err
	}
	if _, err := os.Stat(KubeletKubeconfig); err == nil {
		n.Log.Info("already joined; nothing more to do", "kubeconfig", KubeletKubeconfig)
		return nil
	}
	st := store{n.S3, n.Names}
	token, err := st.get(ctx, FileToken)
	if err != nil {
		return fmt.Errorf("read the join token: %w", err)
	}
	hash, err := st.get(ctx, FileCACertHash)
	if err != nil {
		return fmt.Errorf("read the CA hash: %w", err)
	}
	mode := ModeJoin
	if c.ControlPlane {
		if err := n.WriteSharedPKI(ctx, pkiDir); err != nil {
			return err
		}
		if mode, err = n.ControlPlaneMode(ctx, id.InstanceID); err != nil {
			return err
		}
	}
	kc, err := KubeadmConfig(c, id, mode, strings.TrimSpace(string(token)), strings.TrimSpace(string(hash)))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(kubeadmConfigPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(kubeadmConfigPath, kc, 0o600); err != nil {
		return err
	}
	args, attempts := []string{"join", "--config", kubeadmConfigPath}, 60
	if mode == ModeInit {
		// kube-proxy is not installed: kubedirect's dataplane replaces it.
		args, attempts = []string{"init", "--config", kubeadmConfigPath, "--skip-phases=addon/kube-proxy"}, 3
	}
	if mode == ModeJoinControlPlane {
		// The instance this one replaces left its etcd member behind; without removing it the
		// cluster counts a dead vote. A failure here does not stop the join: etcd still has quorum.
		if err := n.removeReplacedMembers(ctx, id.PrivateIP); err != nil {
			n.Log.Warn("could not remove the etcd members of replaced control planes", "err", err)
		}
	}
	// The control plane may still be starting: retry, cleaning up after a failed try (kubeadm reset
	// also removes a half-added etcd member and the key pairs, which are written again).
	var kubeadmErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		if kubeadmErr = run(ctx, "kubeadm", args...); kubeadmErr == nil {
			break
		}
		n.Log.Warn("kubeadm failed; retrying in 10s", "mode", mode, "attempt", attempt, "err", kubeadmErr)
		_ = run(ctx, "kubeadm", "reset", "-f")
		if c.ControlPlane {
			if err := n.WriteSharedPKI(ctx, pkiDir); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
	if kubeadmErr != nil {
		return fmt.Errorf("kubeadm %s through %s:6443: %w", mode, c.APIEndpoint, kubeadmErr)
	}
	if mode == ModeInit {
		ca, err := st.get(ctx, FileCACert)
		if err != nil {
			return fmt.Errorf("read the cluster CA: %w", err)
		}
		info, err := ClusterInfoKubeconfig("https://"+c.PublicAPIEndpoint+":6443", "https://"+c.APIEndpoint+":6443", ca)
		if err != nil {
			return err
		}
		if err := st.put(ctx, FileKubeconfig, info); err != nil {
			return err
		}
		if err := n.MarkInitialised(ctx, id.InstanceID); err != nil {
			return err
		}
		n.Log.Info("control plane initialised; published the API's addresses", "file", n.Names.StateStore()+FileKubeconfig)
	}
	if !c.ControlPlane {
		return nil
	}
	units := controlPlaneTimers()
	for name, unit := range units {
		if err := os.WriteFile(filepath.Join(systemdDir, name), []byte(unit), 0o644); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	return run(ctx, "systemctl", "enable", "--now", "kubedirect-token.timer", "kubedirect-etcd-snapshot.timer")
}

// RunLogged runs a command with its output in the node's log (the bootstrap log on a node).
func RunLogged(out io.Writer) func(ctx context.Context, name string, args ...string) error {
	return func(ctx context.Context, name string, args ...string) error {
		fmt.Fprintf(out, "+ %s %s\n", name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return nil
	}
}

// Whoami reads this instance's identity from IMDSv2.
func Whoami(ctx context.Context) (*Identity, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return ReadIdentity(ctx, imds.NewFromConfig(cfg))
}
