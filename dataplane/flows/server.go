package flows

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/kubedirect/kubedirect/dataplane/cni"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// Request is what a client asks the flow socket: one JSON line, answered with Records, one a line.
type Request struct {
	// Since asks for the kept flows of the last Since (0: none).
	Since time.Duration `json:"since,omitempty"`
	// Follow asks for every new flow after those, until the client closes the connection.
	Follow bool `json:"follow,omitempty"`
	// Sample, when not 0, raises the event rate to one in Sample new flows for For (DefaultOverride when
	// 0, at most MaxOverride), or until a following client goes away, whichever comes first. The
	// deadline is written into the datapath's config, so the default returns even if the agent dies.
	Sample uint32 `json:"sample,omitempty"`
	// For is how long Sample lasts.
	For time.Duration `json:"for,omitempty"`
}

// Limits of a session's sample override.
const (
	DefaultOverride = 10 * time.Minute
	MaxOverride     = time.Hour
)

// PollInterval is how often Read looks for events the datapath submitted without waking it.
const PollInterval = 200 * time.Millisecond

// Read feeds the ring buffer m into h until ctx ends. It is the ring buffer's only reader.
func Read(ctx context.Context, m *ebpf.Map, node string, h *History) error {
	r, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("open flow events: %w", err)
	}
	go func() {
		<-ctx.Done()
		r.Close()
	}()
	wall := Clock()
	var rec ringbuf.Record
	r.SetDeadline(time.Now().Add(PollInterval))
	for {
		if err := r.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				// the datapath wakes the reader only when much is waiting (KD_EVENTS_WAKEUP_BYTES)
				r.SetDeadline(time.Now().Add(PollInterval))
				continue
			case errors.Is(err, ringbuf.ErrClosed):
				return nil
			}
			return fmt.Errorf("read flow events: %w", err)
		}
		e, err := maps.DecodeEvent(rec.RawSample)
		if err != nil {
			continue // a record of another size: not ours to show
		}
		if f, ok := FromEvent(e, node, wall); ok {
			h.Add(f)
		}
	}
}

// Server answers the flow socket's clients.
type Server struct {
	// Node names the flows' node in Lost records.
	Node string
	// History is what the reader fills.
	History *History
	// RingLost returns the datapath's count of events the full ring buffer could not take.
	RingLost func() (uint64, error)
	// Override raises the event rate to one in rate new flows until d from now; end restores the
	// default unless another session has set its own since.
	Override func(rate uint32, d time.Duration) (end func(), err error)
	// Log receives the server's errors.
	Log *slog.Logger
}

// Serve listens on path until ctx ends.
func (s *Server) Serve(ctx context.Context, path string) error {
	return cni.ServeConns(ctx, path, "flow socket", func(c *net.UnixConn) {
		defer c.Close()
		if err := s.serveConn(ctx, c); err != nil {
			s.Log.Debug("flow client", "err", err)
		}
	})
}

// requestWait bounds how long a client may take to send its request.
const requestWait = 10 * time.Second

// lostEvery is how often a follower is told about losses that grew.
const lostEvery = time.Second

func (s *Server) serveConn(ctx context.Context, c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(requestWait))
	br := bufio.NewReader(c)
	var req Request
	if err := json.NewDecoder(br).Decode(&req); err != nil {
		return fmt.Errorf("read flow request: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	enc := json.NewEncoder(c)
	if req.Sample > 0 {
		d := req.For
		if d <= 0 {
			d = DefaultOverride
		}
		end, err := s.Override(req.Sample, min(d, MaxOverride))
		if err != nil {
			err = fmt.Errorf("set sample override: %w", err)
			_ = enc.Encode(Record{Error: err.Error()})
			return err
		}
		if req.Follow {
			defer end()
		}
	}
	// subscribe before reading the history, so no flow falls between the two
	var live <-chan Flow
	followLost := func() uint64 { return 0 }
	if req.Follow {
		var cancel func()
		live, followLost, cancel = s.History.Follow()
		defer cancel()
	}
	var last time.Time
	if req.Since > 0 {
		past, _ := s.History.Since(time.Now().Add(-req.Since))
		for i := range past {
			if err := enc.Encode(Record{Flow: &past[i]}); err != nil {
				return err
			}
			last = past[i].Time
		}
	}
	lost := func() Lost {
		l := Lost{Node: s.Node, History: s.History.Evicted(), Follow: followLost()}
		if n, err := s.RingLost(); err == nil {
			l.RingBuffer = n
		}
		return l
	}
	sent := lost()
	if err := enc.Encode(Record{Lost: &sent}); err != nil {
		return err
	}
	if !req.Follow {
		return nil
	}
	// the client ends a follow by closing its side
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, br)
		cancel()
	}()
	tick := time.NewTicker(lostEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-live:
			if !f.Time.After(last) && !last.IsZero() {
				continue // already sent from the history
			}
			last = time.Time{}
			if err := enc.Encode(Record{Flow: &f}); err != nil {
				return err
			}
		case <-tick.C:
			if l := lost(); l != sent {
				sent = l
				if err := enc.Encode(Record{Lost: &l}); err != nil {
					return err
				}
			}
		}
	}
}

// Stream sends req to the flow socket at path and copies the answer's lines to w until the agent ends
// it (a request without Follow) or ctx ends.
func Stream(ctx context.Context, path string, req Request, w io.Writer) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("reach the agent's flow socket: %w", err)
	}
	defer c.Close()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send flow request: %w", err)
	}
	if _, err := io.Copy(w, c); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read flows: %w", err)
	}
	return nil
}
