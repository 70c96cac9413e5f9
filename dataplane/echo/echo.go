// Package echo is kubedirect's probe workload: an HTTP and UDP server that answers every request with the
// source address it saw, its pod name and node, and client helpers that read those answers. The lab and the
// cluster validation use it to prove that Services keep the client's source IP.
package echo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reply is what the echo server answers, as JSON.
type Reply struct {
	// Source is the peer address (ip:port) the server saw.
	Source string `json:"source"`
	// Local is the server's own address (ip:port) the request arrived on.
	Local string `json:"local"`
	// Protocol is "http" or "udp".
	Protocol string `json:"protocol"`
	// Pod is $POD_NAME of the server.
	Pod string `json:"pod"`
	// Node is $NODE_NAME of the server.
	Node string `json:"node"`
	// Path is the HTTP request path (empty for UDP).
	Path string `json:"path,omitempty"`
	// Payload is the UDP datagram received (empty for HTTP).
	Payload string `json:"payload,omitempty"`
	// Padding fills a UDP reply to the size the datagram asked for ("size=N").
	Padding string `json:"padding,omitempty"`
}

// SizePrefix starts a UDP datagram that asks for a reply of a given size in bytes: "size=8000".
const SizePrefix = "size="

// reply encodes r, padded with Padding to size bytes when size is larger than the plain answer.
func (r Reply) encode(size int) []byte {
	out, _ := json.Marshal(r)
	if size > len(out)+len(`,"padding":""`) && size <= 65000 {
		r.Padding = strings.Repeat("x", size-len(out)-len(`,"padding":""`))
		out, _ = json.Marshal(r)
	}
	return out
}

// SourceIP is the IP part of Source.
func (r Reply) SourceIP() string {
	host, _, err := net.SplitHostPort(r.Source)
	if err != nil {
		return r.Source
	}
	return host
}

// Server is an HTTP and UDP echo server.
type Server struct {
	// HTTPPort is the TCP port of the HTTP server; 0 disables it.
	HTTPPort int
	// UDPPort is the UDP port of the datagram echo; 0 disables it.
	UDPPort int
	// Pod and Node are reported in every reply; empty means $POD_NAME and $NODE_NAME.
	Pod, Node string
	// Logger receives start and error messages; nil discards them.
	Logger *slog.Logger
}

// ErrNoListeners is returned by Run when both ports are 0.
var ErrNoListeners = errors.New("echo: no port to listen on")

func (s *Server) identity() (string, string) {
	pod, node := s.Pod, s.Node
	if pod == "" {
		pod = os.Getenv("POD_NAME")
	}
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	return pod, node
}

// Run serves until ctx ends. It returns an error when a listener cannot be opened.
func (s *Server) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.HTTPPort == 0 && s.UDPPort == 0 {
		return ErrNoListeners
	}
	pod, node := s.identity()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if s.HTTPPort != 0 {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(s.HTTPPort))
		if err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
		srv := &http.Server{Handler: Handler(pod, node), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serve http: %w", err)
			}
		}()
		go func() {
			// graceful: answer what is in flight, close idle keep-alive connections with a FIN
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("echo http listening", "addr", ln.Addr().String())
	}
	if s.UDPPort != 0 {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(s.UDPPort))
		if err != nil {
			return fmt.Errorf("listen udp: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveUDP(pc, pod, node, log)
		}()
		go func() { <-ctx.Done(); _ = pc.Close() }()
		log.Info("echo udp listening", "addr", pc.LocalAddr().String())
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// Handler is the HTTP echo handler.
func Handler(pod, node string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := ""
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			local = a.String()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Reply{Source: r.RemoteAddr, Local: local, Protocol: "http", Pod: pod, Node: node, Path: r.URL.Path})
	})
}

func serveUDP(pc net.PacketConn, pod, node string, log *slog.Logger) {
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Error("udp read", "err", err)
			}
			return
		}
		payload := string(buf[:n])
		size := 0
		if v, ok := strings.CutPrefix(payload, SizePrefix); ok {
			size, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		out := Reply{Source: addr.String(), Local: pc.LocalAddr().String(), Protocol: "udp", Pod: pod, Node: node, Payload: payload}.encode(size)
		if _, err := pc.WriteTo(out, addr); err != nil {
			log.Debug("udp write", "peer", addr.String(), "err", err)
		}
	}
}

// GetHTTP sends one GET to url on a new connection and decodes the reply.
func GetHTTP(ctx context.Context, url string) (Reply, error) {
	var r Reply
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return r, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return r, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("decode reply from %s: %w", url, err)
	}
	return r, nil
}

// UDP sends one datagram to addr (host:port) from a new socket and decodes the reply.
func UDP(ctx context.Context, addr string) (Reply, error) {
	return UDPFrom(ctx, addr, 0, 0)
}

// UDPFrom sends one datagram to addr from local port srcPort (0: any) asking for a reply of size
// bytes (0: the plain answer) and decodes the reply, which must arrive whole.
func UDPFrom(ctx context.Context, addr string, srcPort, size int) (Reply, error) {
	var r Reply
	d := net.Dialer{}
	if srcPort != 0 {
		d.LocalAddr = &net.UDPAddr{Port: srcPort}
	}
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return r, fmt.Errorf("dial udp %s: %w", addr, err)
	}
	defer conn.Close()
	msg := []byte("ping")
	if size > 0 {
		msg = []byte(SizePrefix + strconv.Itoa(size))
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Second)
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(msg); err != nil {
		return r, fmt.Errorf("send udp %s: %w", addr, err)
	}
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		return r, fmt.Errorf("read udp %s: %w", addr, err)
	}
	if size > 0 && n != size {
		return r, fmt.Errorf("read udp %s: reply of %d bytes, asked for %d", addr, n, size)
	}
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		return r, fmt.Errorf("decode udp reply from %s: %w", addr, err)
	}
	return r, nil
}

// Conn is one long-lived TCP connection to an echo server that sends HTTP requests on it, used to prove
// that an established connection survives a change (an agent restart, a backend scale).
type Conn struct {
	c    net.Conn
	br   *bufio.Reader
	addr string
}

// Dial opens a TCP connection to addr (host:port).
func Dial(ctx context.Context, addr string) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Conn{c: c, br: bufio.NewReader(c), addr: addr}, nil
}

// LocalAddr is the client's own address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// Get sends one HTTP request on the connection and decodes the reply.
func (c *Conn) Get(timeout time.Duration) (Reply, error) {
	var r Reply
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c.c, "GET /conn HTTP/1.1\r\nHost: %s\r\n\r\n", c.addr); err != nil {
		return r, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return r, fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("decode reply: %w", err)
	}
	return r, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// ProbeOptions configure Probe.
type ProbeOptions struct {
	// URL is http://host:port/path (a GET on a new connection), udp://host:port (one datagram) or
	// tcp://host:port (a connection only, for servers that are not echo servers).
	URL string
	// Count attempts, Interval apart (from the start of one to the start of the next).
	Count    int
	Interval time.Duration
	// Timeout bounds each attempt.
	Timeout time.Duration
	// SourcePort fixes the UDP client's local port (0: a new one each time).
	SourcePort int
	// Size asks UDP servers for a reply of this many bytes (0: the plain answer).
	Size int
	// Reuse makes every http:// attempt a request on one connection, opened by the first: an
	// established connection's life. Once it breaks, every later attempt fails; it is never redialled.
	Reuse bool
}

// ProbeResult is one attempt of Probe.
type ProbeResult struct {
	Seq    int    `json:"seq"`
	OK     bool   `json:"ok"`
	Pod    string `json:"pod,omitempty"`
	Millis int64  `json:"ms"`
	Err    string `json:"err,omitempty"`
}

// urlHost is the host:port of an http:// URL.
func urlHost(url string) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	return host
}

// Probe calls o.URL o.Count times and reports each attempt to report.
func Probe(ctx context.Context, o ProbeOptions, report func(ProbeResult)) {
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	var kept *Conn    // the connection Reuse keeps
	var keptErr error // why it broke
	defer func() {
		if kept != nil {
			kept.Close()
		}
	}()
	for i := 0; i < o.Count && ctx.Err() == nil; i++ {
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, o.Timeout)
		var r Reply
		var err error
		switch {
		case o.Reuse && strings.HasPrefix(o.URL, "http://"):
			if kept == nil && keptErr == nil {
				kept, keptErr = Dial(actx, urlHost(o.URL))
			}
			if keptErr == nil {
				if r, err = kept.Get(o.Timeout); err != nil {
					keptErr = fmt.Errorf("the kept connection broke: %w", err)
				}
			}
			err = keptErr
		case strings.HasPrefix(o.URL, "udp://"):
			r, err = UDPFrom(actx, strings.TrimPrefix(o.URL, "udp://"), o.SourcePort, o.Size)
		case strings.HasPrefix(o.URL, "tcp://"):
			var c net.Conn
			if c, err = (&net.Dialer{}).DialContext(actx, "tcp", strings.TrimPrefix(o.URL, "tcp://")); err == nil {
				_ = c.Close()
			}
		default:
			r, err = GetHTTP(actx, o.URL)
		}
		cancel()
		res := ProbeResult{Seq: i, OK: err == nil, Pod: r.Pod, Millis: time.Since(start).Milliseconds()}
		if err != nil {
			res.Err = err.Error()
		}
		report(res)
		if wait := o.Interval - time.Since(start); wait > 0 && i+1 < o.Count {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}
