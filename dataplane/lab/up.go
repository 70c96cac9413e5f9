package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/cni"
	"github.com/kubedirect/kubedirect/provision/spec"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Up builds a lab. A lab of the same name left behind by a crashed run is removed first. On error,
// everything built so far is removed.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if old, err := Open(o.RunRoot, o.Name); err == nil {
		// a lab whose processes run belongs to another run (a second test process, a second `lab up`):
		// taking it down would kill that run's agents under it
		if live := old.liveProcesses(); len(live) > 0 {
			return nil, fmt.Errorf("lab %s is in use: its processes run (%s); remove it with `kubedirect lab down --name %s` or choose another name",
				o.Name, strings.Join(live, ", "), o.Name)
		}
		o.Logger.Info("removing a lab left behind", "name", o.Name)
		_ = old.Down(ctx)
	}
	dir := stateDir(o.RunRoot, o.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create lab dir: %w", err)
	}
	l = &Lab{log: o.Logger, State: State{
		Name: o.Name, Dir: dir, Binary: o.Binary, Subnet: o.Subnet.String(),
		HostIP: addrIn(o.Subnet, 1).String(), HostVeth: o.Name + "-h",
		UnderlayNS: o.Name + "-ul", ClientNS: o.Name + "-client", ClientIP: addrIn(o.Subnet, 100).String(),
		BPFFS: filepath.Join(dir, "bpffs"), Pids: map[string]int{}, K8sBinDir: o.K8sBinDir, ServicesMapSize: o.ServicesMapSize,
		ConntrackMapSize: o.ConntrackMapSize, AgentLogLevel: o.AgentLogLevel, AgentCapabilities: o.AgentCapabilities,
		XDP: o.XDP,
	}}
	defer func() {
		if err != nil {
			_ = l.Down(context.Background())
			l = nil
		}
	}()
	if err := l.save(); err != nil {
		return l, err
	}
	start := time.Now()
	if err := l.network(ctx, o); err != nil {
		return l, err
	}
	o.Logger.Info("network ready", "nodes", o.Nodes, "took", time.Since(start).Round(time.Millisecond))
	if err := l.controlPlane(ctx, o.K8sBinDir); err != nil {
		return l, err
	}
	o.Logger.Info("API server ready", "server", l.State.Server, "took", time.Since(start).Round(time.Millisecond))
	if err := l.registerNodes(ctx); err != nil {
		return l, err
	}
	for _, n := range l.State.Nodes {
		// what the agent writes for the CNI plugin, so pods can be attached before (or without) agents
		if err := cni.WriteNodeState(n.CNIDir, cni.NodeState{PodCIDR: n.PodCIDR, MTU: 1500 - cni.VXLANOverhead}); err != nil {
			return l, err
		}
	}
	if o.NoAgents {
		return l, l.save()
	}
	if err := l.StartAgents(ctx, o.ExternalServiceMode); err != nil {
		return l, err
	}
	o.Logger.Info("agents ready", "took", time.Since(start).Round(time.Millisecond))
	return l, l.save()
}

// StartAgents starts the agent of every node and waits until all are ready.
func (l *Lab) StartAgents(ctx context.Context, mode string) error {
	for i := range l.State.Nodes {
		if err := l.StartAgent(ctx, l.State.Nodes[i].Name, mode); err != nil {
			return err
		}
	}
	for _, n := range l.State.Nodes {
		if err := l.WaitAgentReady(ctx, n.Name, 5*time.Minute); err != nil {
			return err
		}
	}
	return l.save()
}

// network creates the underlay namespace and bridge, the host veth, the nodes, the client, the bpffs
// mount and the node cgroups.
func (l *Lab) network(ctx context.Context, o Options) error {
	s := &l.State
	addNS := func(name string) error {
		s.Namespaces = append(s.Namespaces, name)
		if err := l.save(); err != nil {
			return err
		}
		if err := ip(ctx, "netns", "add", name); err != nil {
			return err
		}
		_ = ip(ctx, "-n", name, "link", "set", "lo", "up")
		_ = run(ctx, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		return nil
	}
	if err := addNS(s.UnderlayNS); err != nil {
		return err
	}
	if err := ip(ctx, "-n", s.UnderlayNS, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	_ = run(ctx, "ip", "netns", "exec", s.UnderlayNS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
	if err := ip(ctx, "-n", s.UnderlayNS, "link", "set", "br0", "up"); err != nil {
		return err
	}
	// plug connects a veth from the bridge into namespace ns (or the host when ns is "") as ifname.
	plug := func(port, ns, ifname, addr string) error {
		if err := ip(ctx, "-n", s.UnderlayNS, "link", "add", port, "type", "veth", "peer", "name", ifname); err != nil {
			return err
		}
		target := []string{"-n", s.UnderlayNS, "link", "set", ifname, "netns"}
		if ns == "" {
			target = append(target, "1")
		} else {
			target = append(target, ns)
		}
		if err := ip(ctx, target...); err != nil {
			return err
		}
		if err := ip(ctx, "-n", s.UnderlayNS, "link", "set", port, "master", "br0", "up"); err != nil {
			return err
		}
		pre := []string{}
		if ns != "" {
			pre = []string{"-n", ns}
		}
		if err := ip(ctx, append(pre, "addr", "add", addr+"/24", "dev", ifname)...); err != nil {
			return err
		}
		return ip(ctx, append(pre, "link", "set", ifname, "up")...)
	}
	if err := plug("host", "", s.HostVeth, s.HostIP); err != nil {
		return err
	}
	if err := addNS(s.ClientNS); err != nil {
		return err
	}
	if err := plug("client", s.ClientNS, "eth0", s.ClientIP); err != nil {
		return err
	}
	if err := os.MkdirAll(s.BPFFS, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", s.BPFFS, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", s.BPFFS, err)
	}
	cgRoot, err := cgroup2Root()
	if err != nil {
		return err
	}
	for i := 1; i <= o.Nodes; i++ {
		name := "node-" + strconv.Itoa(i)
		n := Node{
			Name: name, NetNS: o.Name + "-" + name, IP: addrIn(o.Subnet, 10+i).String(),
			PodCIDR: fmt.Sprintf("10.244.%d.0/24", i), PinDir: filepath.Join(s.BPFFS, name),
			CgroupDir: filepath.Join(cgRoot, "kubedirect-lab-"+o.Name+"-"+name),
			CNIDir:    filepath.Join(s.Dir, "cni", name), Config: filepath.Join(s.Dir, name+".yaml"),
		}
		if err := addNS(n.NetNS); err != nil {
			return err
		}
		if err := plug(name, n.NetNS, "eth0", n.IP); err != nil {
			return err
		}
		s.Cgroups = append(s.Cgroups, n.CgroupDir)
		if err := os.MkdirAll(n.CgroupDir, 0o755); err != nil {
			return fmt.Errorf("create node cgroup: %w", err)
		}
		s.Nodes = append(s.Nodes, n)
	}
	return l.save()
}

// cgroup2Root is where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
func cgroup2Root() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 mount found")
}

// Node returns the node named name.
func (l *Lab) Node(name string) (Node, error) {
	for _, n := range l.State.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("lab has no node %s", name)
}

// StartAgent writes the node's agent config and starts `kubedirect agent` in the node's namespace.
func (l *Lab) StartAgent(ctx context.Context, node, mode string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if mode == "" {
		mode = "tunnel"
	}
	level := l.State.AgentLogLevel
	if level == "" { // a lab recorded before the field existed
		level = "debug"
	}
	xdp := l.State.XDP
	if xdp == "" {
		xdp = string(spec.XDPOff)
	}
	cfg := fmt.Sprintf("podCIDR: 10.244.0.0/16\nserviceCIDR: 10.96.0.0/16\nexternalServiceMode: %s\nlogLevel: %s\nxdp: %q\n"+
		"healthAddr: %s:9890\nbpffsPath: %s\ndevice: eth0\ncniDataDir: %s\ncgroupPath: %s\n"+
		"mapSizes: {services: %d, backends: 262144, conntrack: %d, conntrackNew: %d}\n", mode, level, xdp, n.IP, n.PinDir, n.CNIDir, n.CgroupDir,
		l.State.ServicesMapSize, l.State.ConntrackMapSize, l.State.ConntrackMapSize)
	if err := os.WriteFile(n.Config, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}
	args := []string{"--net=" + nsPath(n.NetNS), "--"}
	if caps := l.State.AgentCapabilities; caps != nil {
		// uid 0 whose bounding set holds only caps gets exactly those at exec, as a container's
		// process does (runc sets the bounding, permitted and effective sets to the same list)
		set := "-all"
		for _, c := range caps {
			set += ",+" + strings.ToLower(c)
		}
		args = append(args, "setpriv", "--bounding-set="+set, "--inh-caps=-all", "--")
	}
	args = append(args, l.State.Binary, "agent", "--config", n.Config, "--kubeconfig", l.State.AgentKC, "--node-name", node)
	pid, err := l.startProc("agent-"+node, nil, "nsenter", args...)
	if err != nil {
		return err
	}
	for i := range l.State.Nodes {
		if l.State.Nodes[i].Name == node {
			l.State.Nodes[i].AgentPid = pid
		}
	}
	return l.save()
}

// StopAgent stops a node's agent (SIGTERM; its pinned maps and programs stay in place).
func (l *Lab) StopAgent(node string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	stopPid(n.AgentPid, l.State.Name, 5*time.Second)
	return nil
}

// KillAgent kills a node's agent with SIGKILL, as the kernel's OOM killer or a crash would: it cleans
// nothing up. It returns when the process is gone.
func (l *Lab) KillAgent(node string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if n.AgentPid <= 0 || !ours(n.AgentPid, l.State.Name) {
		return fmt.Errorf("no agent running on %s", node)
	}
	if err := syscall.Kill(n.AgentPid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill agent on %s: %w", node, err)
	}
	return wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return !ours(n.AgentPid, l.State.Name), nil
	})
}

// RestartAgent stops and starts a node's agent and waits until it is ready again.
func (l *Lab) RestartAgent(ctx context.Context, node, mode string) error {
	if err := l.StopAgent(node); err != nil {
		return err
	}
	if err := l.StartAgent(ctx, node, mode); err != nil {
		return err
	}
	return l.WaitAgentReady(ctx, node, 30*time.Second)
}

// AgentURL is the base URL of a node agent's health server (reachable from the host through the
// lab's host veth).
func (l *Lab) AgentURL(node string) string {
	n, _ := l.Node(node)
	return "http://" + n.IP + ":9890"
}

// WaitAgentReady polls the agent's /readyz.
func (l *Lab) WaitAgentReady(ctx context.Context, node string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	ok, err := waitOK(ctx, c, l.AgentURL(node)+"/readyz", "", timeout, 100*time.Millisecond)
	if err == nil && !ok {
		err = fmt.Errorf("agent on %s not ready after %s (log %s)", node, timeout, l.Log("agent-"+node))
	}
	return err
}
