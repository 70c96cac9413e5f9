// Package lab builds a kubedirect test bed on one machine: N nodes as network namespaces on an underlay
// bridge (itself in a namespace the lab owns), pods as namespaces attached by the kubedirect CNI plugin
// and running the echo probe, an outside client namespace, a real etcd + kube-apiserver, and one
// kubedirect agent process per node with its own bpffs pin directory and cgroup. Everything it starts is
// recorded in a state file so Down removes it by pid and by name, even from another process.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Defaults.
const (
	DefaultName    = "kdlab"
	DefaultNodes   = 3
	DefaultRunRoot = "/run/kubedirect-lab"
	// HTTPPort and UDPPort are the echo ports of every lab pod.
	HTTPPort = 8080
	UDPPort  = 9090
)

// DefaultSubnet is the underlay of the default lab: private, and reachable only through the bridge the
// lab creates in its own namespace (plus one veth into the host for the API server).
var DefaultSubnet = netip.MustParsePrefix("192.168.254.0/24")

// Options configure Up.
type Options struct {
	// Name prefixes every namespace, interface, cgroup and the state directory. Default "kdlab".
	Name string
	// Nodes is the number of nodes. Default 3.
	Nodes int
	// Subnet is the underlay /24: .1 the host side (API server), .11.. the nodes, .100 the client.
	Subnet netip.Prefix
	// Binary is the kubedirect executable run as agent, CNI plugin and echo. Default: this executable.
	Binary string
	// K8sBinDir holds etcd and kube-apiserver (hack/build-k8s.sh prints it).
	K8sBinDir string
	// RunRoot holds the lab's state directory. Default /run/kubedirect-lab.
	RunRoot string
	// ExternalServiceMode is the agents' default (tunnel or dsr). Default tunnel.
	ExternalServiceMode string
	// XDP is the agents' xdp setting (native or off). Default off.
	XDP string
	// ServicesMapSize is the agents' services map capacity (default 65536).
	ServicesMapSize int
	// ConntrackMapSize is the agents' capacity of each conntrack map, established and new flows
	// (default 65536).
	ConntrackMapSize int
	// NoAgents leaves the nodes without kubedirect agents (the benchmark runs kube-proxy there first).
	NoAgents bool
	// AgentLogLevel is the agents' log level. Default debug (the lab's tests read the agents' logs); the
	// scale run uses info, since 50 agents logging every Service at debug cost more than they sync.
	AgentLogLevel string
	// AgentCapabilities, when not nil, are the only Linux capabilities the agents keep (names as in
	// capabilities(7) without CAP_, e.g. "NET_ADMIN"), as in a container that drops ALL and adds these;
	// nil runs them with all of root's.
	AgentCapabilities []string
	// Logger receives progress. Default: discard.
	Logger *slog.Logger
}

// Node is one lab node.
type Node struct {
	Name    string `json:"name"`
	NetNS   string `json:"netns"`
	IP      string `json:"ip"`
	PodCIDR string `json:"podCIDR"`
	// PinDir is the agent's bpffs directory, CgroupDir the cgroup its socket hooks attach to, CNIDir the
	// CNI data dir shared by the plugin and the agent.
	PinDir    string `json:"pinDir"`
	CgroupDir string `json:"cgroupDir"`
	CNIDir    string `json:"cniDir"`
	Config    string `json:"config"`
	AgentPid  int    `json:"agentPid"`
}

// Pod is one lab pod running the echo probe.
type Pod struct {
	Name  string `json:"name"`
	Node  string `json:"node"`
	NetNS string `json:"netns"`
	IP    string `json:"ip"`
	Pid   int    `json:"pid"`
}

// State is what Up built, saved as state.json in the lab's directory.
type State struct {
	Name       string `json:"name"`
	Dir        string `json:"dir"`
	Binary     string `json:"binary"`
	Subnet     string `json:"subnet"`
	HostIP     string `json:"hostIP"`
	HostVeth   string `json:"hostVeth"`
	UnderlayNS string `json:"underlayNetns"`
	ClientNS   string `json:"clientNetns"`
	ClientIP   string `json:"clientIP"`
	Server     string `json:"server"`
	Kubeconfig string `json:"kubeconfig"`
	AgentKC    string `json:"agentKubeconfig"`
	BPFFS      string `json:"bpffs"`
	K8sBinDir  string `json:"k8sBinDir"`
	// APIServer is the API server's command line, kept so that it can be stopped and started again.
	APIServer []string `json:"apiServer"`
	// XDP is the agents' xdp setting (native or off); "" is off. StartAgent reads it, so a test may
	// change it before restarting an agent.
	XDP string `json:"xdp,omitempty"`
	// ServicesMapSize is the agents' services map capacity.
	ServicesMapSize int `json:"servicesMapSize"`
	// ConntrackMapSize is the agents' capacity of each conntrack map.
	ConntrackMapSize int `json:"conntrackMapSize"`
	// AgentLogLevel is the agents' log level.
	AgentLogLevel string `json:"agentLogLevel"`
	// AgentCapabilities are Options.AgentCapabilities (nil: all).
	AgentCapabilities []string       `json:"agentCapabilities,omitempty"`
	Pids              map[string]int `json:"pids"`
	Nodes             []Node         `json:"nodes"`
	Pods              []Pod          `json:"pods"`
	Cgroups           []string       `json:"cgroups"`
	Namespaces        []string       `json:"namespaces"`
}

// Lab is a running lab.
type Lab struct {
	// State describes it.
	State State
	// Client is an admin client of the lab's API server.
	Client kubernetes.Interface

	log *slog.Logger
	mu  sync.Mutex
}

// ErrNoLab is returned by Open when no lab of that name exists.
var ErrNoLab = errors.New("no such lab")

func (o *Options) setDefaults() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if !o.Subnet.IsValid() {
		o.Subnet = DefaultSubnet
	}
	if o.Subnet.Bits() != 24 || !o.Subnet.Addr().Is4() {
		return fmt.Errorf("lab subnet %s: want an IPv4 /24", o.Subnet)
	}
	if o.RunRoot == "" {
		o.RunRoot = DefaultRunRoot
	}
	if o.ServicesMapSize == 0 {
		o.ServicesMapSize = 65536
	}
	if o.ConntrackMapSize == 0 {
		o.ConntrackMapSize = 65536
	}
	if o.AgentLogLevel == "" {
		o.AgentLogLevel = "debug"
	}
	if o.ExternalServiceMode == "" {
		o.ExternalServiceMode = "tunnel"
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable: %w", err)
		}
		o.Binary = exe
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(o.Name) > 8 {
		return fmt.Errorf("lab name %q: at most 8 characters (interface names)", o.Name)
	}
	return nil
}

func addrIn(p netip.Prefix, host int) netip.Addr {
	b := p.Masked().Addr().As4()
	b[3] = byte(host)
	return netip.AddrFrom4(b)
}

func stateDir(runRoot, name string) string { return filepath.Join(runRoot, name) }

func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.Dir, "state.json"))
}

func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.State.save()
}

// Open reads the state of the lab name under runRoot ("" for the default) and connects to its API server.
func Open(runRoot, name string) (*Lab, error) {
	if runRoot == "" {
		runRoot = DefaultRunRoot
	}
	data, err := os.ReadFile(filepath.Join(stateDir(runRoot, name), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open lab %s: %w", name, ErrNoLab)
	}
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", name, err)
	}
	l := &Lab{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := json.Unmarshal(data, &l.State); err != nil {
		return nil, fmt.Errorf("parse lab state: %w", err)
	}
	if l.State.Kubeconfig != "" {
		if c, err := clientFor(l.State.Kubeconfig); err == nil {
			l.Client = c
		}
	}
	return l, nil
}

// run executes a command and returns its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ip runs iproute2's ip.
func ip(ctx context.Context, args ...string) error { return run(ctx, "ip", args...) }

// startProc starts a long-lived lab process in its own session with its output in logs/<key>.log and
// KUBEDIRECT_LAB=<name> in its environment (Down checks it before killing a recorded pid).
func (l *Lab) startProc(key string, env []string, name string, args ...string) (int, error) {
	logDir := filepath.Join(l.State.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(filepath.Join(logDir, key+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), "KUBEDIRECT_LAB="+l.State.Name), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", key, err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap while this process lives
	l.mu.Lock()
	l.State.Pids[key] = pid
	l.mu.Unlock()
	return pid, nil
}

// ours reports whether pid is a process this lab started (its environment carries the lab's name).
func ours(pid int, name string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv == "KUBEDIRECT_LAB="+name {
			return true
		}
	}
	return false
}

// liveProcesses lists the lab's recorded processes that still run, as "key pid", sorted.
func (l *Lab) liveProcesses() []string {
	var live []string
	for key, pid := range l.State.Pids {
		if pid > 0 && ours(pid, l.State.Name) {
			live = append(live, key+" "+strconv.Itoa(pid))
		}
	}
	sort.Strings(live)
	return live
}

// stopPid sends SIGTERM to a lab process, then SIGKILL after timeout; it waits until it is gone.
func stopPid(pid int, name string, timeout time.Duration) {
	if pid <= 0 || !ours(pid, name) {
		return
	}
	gone := func(context.Context) (bool, error) { return !ours(pid, name), nil }
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, gone) == nil {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 2*time.Second, true, gone)
}

// nsPath is the path of a named network namespace.
func nsPath(name string) string { return "/run/netns/" + name }

// Log returns the log file of a lab process key (agent-node-1, echo-web-1, apiserver, etcd).
func (l *Lab) Log(key string) string { return filepath.Join(l.State.Dir, "logs", key+".log") }

// LogTail returns the last n lines of the log of key ("" when there is none): what a failure report
// shows of a process that exited, before Down removes the lab's directory.
func (l *Lab) LogTail(key string, n int) string {
	data, err := os.ReadFile(l.Log(key))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
