package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// StatusURL is where an agent serving on healthAddr (the config's ":9890" or "IP:9890") answers /status
// for a process on the same node: an unspecified host is the loopback.
func StatusURL(healthAddr string) string {
	host, port, err := net.SplitHostPort(healthAddr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + agentstatus.Path
}

// Collect reads the node's dump: the maps pinned under pinDir, where the programs are attached, and the
// agent's status from statusURL ("" skips it). A status that cannot be read is reported in the Dump
// (StatusError), not as an error: the maps say the most when the agent is in trouble.
func Collect(ctx context.Context, pinDir, statusURL, node string) (*Dump, error) {
	s, err := maps.Open(pinDir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	d, err := Read(s, maps.MonotonicNow())
	if err != nil {
		return nil, err
	}
	d.Node = node
	if d.Attachments, err = loader.Attachments(pinDir); err != nil {
		return nil, err
	}
	if statusURL != "" {
		st, err := fetchStatus(ctx, statusURL)
		if err != nil {
			d.StatusError = err.Error()
		} else {
			d.Status = st
			if d.Node == "" {
				d.Node = st.Node
			}
		}
	}
	return d, nil
}

func fetchStatus(ctx context.Context, url string) (*agentstatus.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("read agent status: %w", err)
	}
	// The agent is on this node: never through a proxy the environment names.
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("read agent status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("read agent status: %s: %s", resp.Status, b)
	}
	var st agentstatus.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode agent status: %w", err)
	}
	return &st, nil
}
