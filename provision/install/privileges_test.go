package install

import (
	"slices"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/agent"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestDaemonSetHasNoPrivilegedContainer: no container of the agent's pod is privileged or may gain
// privileges; each drops ALL capabilities, runs on a read-only root filesystem, and only the agent adds
// capabilities back: exactly agent.Capabilities (the list TestRootLabAgentLeastPrivilege proves needed
// and sufficient). No mount asks for Bidirectional propagation (privileged containers only).
func TestDaemonSetHasNoPrivilegedContainer(t *testing.T) {
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(renderKind(t, goldenValues)["DaemonSet"][0], &ds); err != nil {
		t.Fatal(err)
	}
	p := ds.Spec.Template.Spec
	if p.HostPID || p.HostIPC {
		t.Errorf("hostPID %v hostIPC %v: the agent needs neither", p.HostPID, p.HostIPC)
	}
	for _, c := range append(slices.Clone(p.InitContainers), p.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext (the runtime's defaults add capabilities)", c.Name)
			continue
		}
		if sc.Privileged == nil || *sc.Privileged {
			t.Errorf("container %s: privileged %v, want false", c.Name, deref(sc.Privileged))
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation %v, want false", c.Name, deref(sc.AllowPrivilegeEscalation))
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem %v, want true", c.Name, deref(sc.ReadOnlyRootFilesystem))
		}
		var add, drop []string
		if sc.Capabilities != nil {
			for _, a := range sc.Capabilities.Add {
				add = append(add, string(a))
			}
			for _, d := range sc.Capabilities.Drop {
				drop = append(drop, string(d))
			}
		}
		if !slices.Equal(drop, []string{"ALL"}) {
			t.Errorf("container %s drops %v, want [ALL]", c.Name, drop)
		}
		want := []string(nil)
		if c.Name == "agent" {
			want = agent.Capabilities
		}
		if !slices.Equal(add, want) {
			t.Errorf("container %s adds capabilities %v, want %v", c.Name, add, want)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
				t.Errorf("container %s: mount %s is Bidirectional, which only privileged containers may use", c.Name, m.Name)
			}
		}
	}
}

func deref(b *bool) any {
	if b == nil {
		return "unset"
	}
	return *b
}

// TestHealthPortIsWhereTheAgentListens: a changed healthPort moves the agent's listening address (the
// ConfigMap's healthAddr, which the agent binds: TestRootLabAgentLeastPrivilege), its probes, its
// containerPort and the scrape annotation together, so nothing probes a port the agent does not serve.
func TestHealthPortIsWhereTheAgentListens(t *testing.T) {
	objs := renderValues(t, func(v *ChartValues) { v.HealthPort, v.ProxyHealthPort = 9999, 10999 })
	cfg := agentConfig(t, objs)
	if cfg.HealthAddr != ":9999" || cfg.ProxyHealthAddr != ":10999" {
		t.Errorf("agent listens on %q and %q, want :9999 and :10999", cfg.HealthAddr, cfg.ProxyHealthAddr)
	}
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(objs["DaemonSet"][0], &ds); err != nil {
		t.Fatal(err)
	}
	a := ds.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range a.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["health"] != 9999 || ports["proxy-health"] != 10999 || a.ReadinessProbe.HTTPGet.Port.IntValue() != 9999 ||
		a.LivenessProbe.HTTPGet.Port.IntValue() != 9999 || ds.Spec.Template.Annotations["prometheus.io/port"] != "9999" {
		t.Errorf("ports %v, probes %v %v, scrape port %q: want 9999 (proxy health 10999)", ports,
			a.ReadinessProbe.HTTPGet.Port, a.LivenessProbe.HTTPGet.Port, ds.Spec.Template.Annotations["prometheus.io/port"])
	}
}
