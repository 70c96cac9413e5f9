package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/kubedirect/kubedirect/dataplane/echo"
	"k8s.io/apimachinery/pkg/util/wait"
)

// netConf is the network configuration the lab hands the CNI plugin of a node.
func netConf(n Node) []byte {
	conf := map[string]any{"cniVersion": "1.0.0", "name": "kubedirect", "type": "kubedirect", "dataDir": n.CNIDir}
	if n.AgentPid == 0 {
		conf["agentWait"] = "0s" // no agent on this node (the benchmark's kube-proxy phase)
	}
	b, _ := json.Marshal(conf)
	return b
}

// cni runs the kubedirect CNI plugin in the node's namespace, as a container runtime would.
func (l *Lab) cni(ctx context.Context, n Node, command, podNS, containerID, pod string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+nsPath(n.NetNS), "--", l.State.Binary, "cni")
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+nsPath(podNS),
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME="+pod)
	cmd.Stdin = bytes.NewReader(netConf(n))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cni %s %s: %w: %s %s", command, pod, err, strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// AddPod creates a pod namespace on node, attaches it with the CNI plugin and starts the echo probe in
// it (HTTP on HTTPPort, UDP on UDPPort); it returns once the echo answers.
func (l *Lab) AddPod(ctx context.Context, node, name string) (Pod, error) {
	n, err := l.Node(node)
	if err != nil {
		return Pod{}, err
	}
	p := Pod{Name: name, Node: node, NetNS: l.State.Name + "-p-" + name}
	l.mu.Lock()
	l.State.Namespaces = append(l.State.Namespaces, p.NetNS)
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return p, err
	}
	if err := ip(ctx, "netns", "add", p.NetNS); err != nil {
		return p, err
	}
	out, err := l.cni(ctx, n, "ADD", p.NetNS, "lab-"+name, name)
	if err != nil {
		return p, err
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return p, fmt.Errorf("cni result for %s: %v: %s", name, err, out)
	}
	a, _, err := net.ParseCIDR(res.IPs[0].Address)
	if err != nil {
		return p, fmt.Errorf("cni result address %q: %w", res.IPs[0].Address, err)
	}
	p.IP = a.String()
	pid, err := l.startProc("echo-"+name, []string{"POD_NAME=" + name, "NODE_NAME=" + node}, "nsenter", "--net="+nsPath(p.NetNS), "--",
		l.State.Binary, "echo", "--http-port", strconv.Itoa(HTTPPort), "--udp-port", strconv.Itoa(UDPPort))
	if err != nil {
		return p, err
	}
	p.Pid = pid
	l.mu.Lock()
	l.State.Pods = append(l.State.Pods, p)
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return p, err
	}
	if perr := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, err = l.HTTP(ctx, p.NetNS, "127.0.0.1:"+strconv.Itoa(HTTPPort), time.Second)
		return err == nil, nil
	}); perr != nil {
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		return p, fmt.Errorf("echo in pod %s not answering: %w (log %s)", name, err, l.Log("echo-"+name))
	}
	return p, nil
}

// DeletePod stops the pod's echo, runs CNI DEL and removes its namespace.
func (l *Lab) DeletePod(ctx context.Context, name string) error {
	l.mu.Lock()
	var p Pod
	var keep []Pod
	for _, x := range l.State.Pods {
		if x.Name == name {
			p = x
		} else {
			keep = append(keep, x)
		}
	}
	l.State.Pods = keep
	l.mu.Unlock()
	if p.Name == "" {
		return fmt.Errorf("lab has no pod %s", name)
	}
	stopPid(p.Pid, l.State.Name, 2*time.Second)
	n, err := l.Node(p.Node)
	if err == nil {
		_, err = l.cni(ctx, n, "DEL", p.NetNS, "lab-"+name, name)
	}
	_ = ip(ctx, "netns", "del", p.NetNS)
	return err
}

// In runs fn with the calling goroutine's thread in the named network namespace. Sockets created in fn
// stay in that namespace after fn returns.
func In(netns string, fn func() error) error {
	return ns.WithNetNSPath(nsPath(netns), func(ns.NetNS) error { return fn() })
}

// HTTP opens a new TCP connection from namespace netns to addr (ip:port), sends one request to the echo
// and returns its reply.
func (l *Lab) HTTP(ctx context.Context, netns, addr string, timeout time.Duration) (echo.Reply, error) {
	var c *echo.Conn
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := In(netns, func() error {
		var err error
		c, err = echo.Dial(cctx, addr)
		return err
	})
	if err != nil {
		return echo.Reply{}, err
	}
	defer c.Close()
	return c.Get(timeout)
}

// Dial opens a long-lived TCP connection from namespace netns to addr.
func (l *Lab) Dial(ctx context.Context, netns, addr string) (*echo.Conn, error) {
	var c *echo.Conn
	err := In(netns, func() error {
		var err error
		c, err = echo.Dial(ctx, addr)
		return err
	})
	return c, err
}

// UDP sends one datagram from namespace netns to addr and returns the echo's reply.
func (l *Lab) UDP(ctx context.Context, netns, addr string, timeout time.Duration) (echo.Reply, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r echo.Reply
	err := In(netns, func() error {
		var err error
		r, err = echo.UDP(cctx, addr)
		return err
	})
	return r, err
}

// HostNetworkHTTP runs `kubedirect echo client` as a host-network process of node (its namespace and its
// cgroup, where the socket hooks are attached) against url.
func (l *Lab) HostNetworkHTTP(ctx context.Context, node, url string) (echo.Reply, error) {
	n, err := l.Node(node)
	if err != nil {
		return echo.Reply{}, err
	}
	script := `echo $$ > "$1/cgroup.procs" && exec nsenter --net="$2" -- "$3" echo client --timeout 3s "$4"`
	cmd := exec.CommandContext(ctx, "sh", "-c", script, "sh", n.CgroupDir, nsPath(n.NetNS), l.State.Binary, url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return echo.Reply{}, fmt.Errorf("host-network client on %s: %w: %s", node, err, strings.TrimSpace(errb.String()))
	}
	var r echo.Reply
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("decode host-network client output %q: %w", out.String(), err)
	}
	return r, nil
}
