package aws

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/internal/testutil"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// TestUserDataOnlyInstallsPackagesAndRunsTheBinary: user-data installs kubelet and kubeadm at the
// spec's version, fetches the kubedirect binary from the state store with a signed request (no AWS
// CLI, no snap), checks its digest and hands over to `kubedirect node bootstrap` with the node's config.
func TestUserDataOnlyInstallsPackagesAndRunsTheBinary(t *testing.T) {
	c := loadExample(t)
	m, err := newModel(c, "")
	if err != nil {
		t.Fatal(err)
	}
	const endpoint = "kubedirect-prod-api-int-0123456789abcdef.elb.eu-west-1.amazonaws.com"
	const public = "kubedirect-prod-api-0123456789abcdef.elb.eu-west-1.amazonaws.com"
	for _, g := range c.Spec.NodeGroups {
		ud, err := RenderUserData(m.bootstrap(g, endpoint, public))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "userdata-"+g.Name+".golden", ud)
		s := string(ud)
		for _, want := range []string{
			"kubelet=1.34.4-1.1 kubeadm=1.34.4-1.1", "pkgs.k8s.io/core:/stable:/v1.34/deb/",
			"--aws-sigv4", "clusters/prod/bootstrap/kubedirect-linux-amd64", "sha256sum -c",
			"/usr/local/bin/kubedirect node bootstrap --config /etc/kubedirect/bootstrap.json",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: user-data lacks %q", g.Name, want)
			}
		}
		for _, banned := range []string{"snap ", "aws s3", "aws ec2", "kubeadm init", "kubeadm join"} {
			if strings.Contains(s, banned) {
				t.Errorf("%s: user-data still does %q (the Go bootstrap's job)", g.Name, banned)
			}
		}
		body := s[strings.Index(s, "<<'JSON'\n")+len("<<'JSON'\n") : strings.LastIndex(s, "\nJSON\n")]
		var nc NodeConfig
		if err := json.Unmarshal([]byte(body), &nc); err != nil {
			t.Fatalf("%s: node config is not JSON: %v\n%s", g.Name, err, body)
		}
		if nc.ControlPlane != (g.Role == spec.RoleControlPlane) || !nc.DSR || nc.APIEndpoint != endpoint || nc.PublicAPIEndpoint != public ||
			nc.StateStore != "s3://example-kubedirect-state/clusters" || nc.Arch != "amd64" {
			t.Errorf("%s: node config %+v", g.Name, nc)
		}
	}
}

// TestKubeadmConfigOfControlPlaneAndWorker: the control plane initialises without kube-proxy's
// settings from the state store's token with a TTL (renewed, never permanent); workers join the
// internal endpoint pinned to the CA hash.
func TestKubeadmConfigOfControlPlaneAndWorker(t *testing.T) {
	nc := &NodeConfig{Cluster: "prod", ControlPlane: true, KubernetesVersion: "v1.34.4", APIEndpoint: "api-int.example", PublicAPIEndpoint: "api.example",
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16"}
	id := &Identity{InstanceID: "i-0123", PrivateIP: "172.20.0.10", Hostname: "ip-172-20-0-10.eu-west-1.compute.internal", Zone: "eu-west-1a"}
	b, err := KubeadmConfig(nc, id, ModeInit, "abcdef.0123456789abcdef", "")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`ttl: "24h0m0s"`, `advertiseAddress: "172.20.0.10"`, `controlPlaneEndpoint: "api-int.example:6443"`,
		`certSANs: ["api-int.example", "api.example"]`, "podSubnet: 10.244.0.0/16", `name: "ip-172-20-0-10.eu-west-1.compute.internal"`,
		"{name: cloud-provider, value: external}", `{name: provider-id, value: "aws:///eu-west-1a/i-0123"}`} {
		if !strings.Contains(s, want) {
			t.Errorf("init config lacks %q:\n%s", want, s)
		}
	}
	// Another control plane joins as one: it runs its own API server and etcd member.
	b, _ = KubeadmConfig(nc, id, ModeJoinControlPlane, "abcdef.0123456789abcdef", "sha256:00ff")
	s = string(b)
	testutil.WantContains(t, "control-plane join config", s, "kind: JoinConfiguration", `apiServerEndpoint: "api-int.example:6443"`, "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"172.20.0.10\"")
	nc.ControlPlane = false
	b, _ = KubeadmConfig(nc, id, ModeJoin, "abcdef.0123456789abcdef", "sha256:00ff")
	s = string(b)
	for _, want := range []string{"kind: JoinConfiguration", `apiServerEndpoint: "api-int.example:6443"`, `caCertHashes: ["sha256:00ff"]`,
		"{name: cloud-provider, value: external}", `{name: provider-id, value: "aws:///eu-west-1a/i-0123"}`} {
		if !strings.Contains(s, want) {
			t.Errorf("join config lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "controlPlane:") {
		t.Errorf("a worker joins as a control plane:\n%s", s)
	}
}

// TestControlPlaneRenewsTheJoinToken: the token kubeadm makes replaces the one in the state store;
// output that is not a token is refused and the old one stays.
func TestControlPlaneRenewsTheJoinToken(t *testing.T) {
	e := newEnv(t)
	names, _ := clusterNames(e.c)
	n := &Node{Names: names, S3: e.cloud.S3()}
	n.defaults()
	key := names.StateKey(FileToken)
	e.cloud.PutObject("example-kubedirect-state", key, []byte("old123.0123456789abcdef"))
	var args []string
	err := n.RenewToken(context.Background(), func(_ context.Context, name string, a ...string) ([]byte, error) {
		args = append([]string{name}, a...)
		return []byte("new456.fedcba9876543210\n"), nil
	})
	if err != nil || string(e.cloud.Object("example-kubedirect-state", key)) != "new456.fedcba9876543210" {
		t.Fatalf("renew: %v, store has %q", err, e.cloud.Object("example-kubedirect-state", key))
	}
	if !strings.Contains(strings.Join(args, " "), "token create --ttl 24h0m0s") {
		t.Errorf("ran %v", args)
	}
	err = n.RenewToken(context.Background(), func(context.Context, string, ...string) ([]byte, error) { return []byte("error: no"), nil })
	if err == nil || string(e.cloud.Object("example-kubedirect-state", key)) != "new456.fedcba9876543210" {
		t.Errorf("bad output accepted: %v", err)
	}
}

// TestKubeadmAcceptsTheRenderedConfigs: the real kubeadm validates the init configuration and both
// join configurations (field names, the kubelet's extra arguments, the control-plane section).
func TestKubeadmAcceptsTheRenderedConfigs(t *testing.T) {
	kubeadm := k8sBinary(t, "kubeadm")
	nc := &NodeConfig{Cluster: "prod", ControlPlane: true, KubernetesVersion: "v1.34.4", APIEndpoint: "api-int.example", PublicAPIEndpoint: "api.example",
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/16"}
	id := &Identity{InstanceID: "i-0123", PrivateIP: "172.20.0.10", Hostname: "ip-172-20-0-10.eu-west-1.compute.internal", Zone: "eu-west-1a"}
	for _, mode := range []JoinMode{ModeInit, ModeJoinControlPlane, ModeJoin} {
		b, err := KubeadmConfig(nc, id, mode, "abcdef.0123456789abcdef", "sha256:"+strings.Repeat("0f", 32))
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "kubeadm.yaml")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(kubeadm, "config", "validate", "--config", f).CombinedOutput(); err != nil {
			t.Errorf("%s: kubeadm config validate: %v\n%s\n%s", mode, err, out, b)
		}
	}
}
