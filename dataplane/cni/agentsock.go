package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedirect/kubedirect/internal/privfs"
)

// The CNI plugin tells the agent about pods over a unix socket (as Cilium's plugin talks to its agent):
// ADD asks the agent to program the new pod and waits for its answer, DEL tells it the pod is gone.
// The socket lives in a directory only root can enter (0700) and is itself 0600.

// SocketPath is the agent's socket under dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "agent", "agent.sock") }

// Request is one message from the plugin: the pod at IP (its host veth HostIfindex) was added or deleted.
type Request struct {
	// Op is OpAdd or OpDel.
	Op          string     `json:"op"`
	IP          netip.Addr `json:"ip"`
	HostIfindex int        `json:"hostIfindex,omitempty"`
}

// Request operations.
const (
	OpAdd = "add"
	OpDel = "del"
)

// Reply is the agent's answer: the pod is programmed (ADD) or removed (DEL), or why not.
type Reply struct {
	Done  bool   `json:"done"`
	Error string `json:"error,omitempty"`
}

// Handler answers one request; it runs on its own goroutine per connection.
type Handler func(ctx context.Context, r Request) Reply

// Listen listens on a unix socket at path that only root reaches (its directory 0700, the socket 0600),
// replacing a stale socket of an earlier agent. The agent's local sockets (the CNI plugin's, the flow
// monitor's) are made this way; nothing of the agent's listens on the network for them.
func Listen(path string) (*net.UnixListener, error) {
	if err := privfs.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create agent socket dir: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale agent socket: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on agent socket: %w", err)
	}
	if err := os.Chmod(path, privfs.FileMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict agent socket: %w", err)
	}
	return l, nil
}

// Serve listens on SocketPath(dataDir) until ctx ends, answering each connection's request with h. A
// stale socket of an earlier agent is replaced.
func Serve(ctx context.Context, dataDir string, h Handler) error {
	return ServeConns(ctx, SocketPath(dataDir), "agent socket", func(c *net.UnixConn) { serveConn(ctx, c, h) })
}

// ServeConns listens on the unix socket path (Listen) until ctx ends and runs serve on every
// connection in its own goroutine; serve closes the connection. what names the socket in errors.
// It returns nil when ctx ends.
func ServeConns(ctx context.Context, path, what string, serve func(*net.UnixConn)) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		l.Close() // also unlinks the socket
	}()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", what, err)
		}
		go serve(c)
	}
}

// maxRequestWait bounds how long the agent keeps a connection whose plugin sends nothing.
const maxRequestWait = 10 * time.Second

func serveConn(ctx context.Context, c *net.UnixConn, h Handler) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(maxRequestWait))
	var r Request
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	_ = json.NewEncoder(c).Encode(h(ctx, r))
}

// Notify sends r to the agent and waits up to timeout for its reply. An agent that is not running is an
// error at once (the socket is absent or refuses).
func Notify(dataDir string, r Request, timeout time.Duration) (Reply, error) {
	var rep Reply
	c, err := net.DialTimeout("unix", SocketPath(dataDir), timeout)
	if err != nil {
		return rep, fmt.Errorf("reach the agent: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(r); err != nil {
		return rep, fmt.Errorf("send to the agent: %w", err)
	}
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return rep, fmt.Errorf("read the agent's reply: %w", err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("agent: %s", rep.Error)
	}
	return rep, nil
}
