package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// NginxPort is where StartNginx's server listens in a pod, beside the echo's ports.
const NginxPort = 8088

// nginxConf serves a fixed 3-byte body and closes every connection after its response. It runs as
// one process (master_process off) so that the lab's pid bookkeeping sees its own environment:
// nginx's master rewrites its process title over the environment block, which Down reads to be sure
// a recorded pid is still the lab's.
const nginxConf = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp;
	proxy_temp_path %[1]s/tmp;
	fastcgi_temp_path %[1]s/tmp;
	uwsgi_temp_path %[1]s/tmp;
	scgi_temp_path %[1]s/tmp;
	keepalive_timeout 0;
	server {
		listen %[2]d backlog=8192;
		location / { return 200 "ok\n"; }
	}
}
`

// StartNginx runs nginx (the Debian package) in pod's namespace on NginxPort, as the benchmark's
// backend that is not a bottleneck, and waits until it answers.
func (l *Lab) StartNginx(ctx context.Context, pod Pod) error {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return fmt.Errorf("find nginx (hack/ensure-tools.sh installs it): %w", err)
	}
	dir := filepath.Join(l.State.Dir, "nginx-"+pod.Name)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, NginxPort), 0o600); err != nil {
		return err
	}
	if _, err := l.startProc("nginx-"+pod.Name, nil, "nsenter", "--net="+nsPath(pod.NetNS), "--",
		bin, "-p", dir+"/", "-e", filepath.Join(dir, "error.log"), "-c", conf); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	addr := fmt.Sprintf("http://127.0.0.1:%d/", NginxPort)
	var last error
	if perr := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = WRK(ctx, pod.NetNS, addr, 1, 1, time.Second)
		return last == nil, nil
	}); perr != nil {
		return fmt.Errorf("nginx in pod %s not answering: %w (log %s)", pod.Name, last, filepath.Join(dir, "error.log"))
	}
	return nil
}

// WRKResult is what one wrk run measured.
type WRKResult struct {
	// Requests completed per second; with Connection: close, also new connections per second.
	RequestsPerSec float64
	// P50 and P99 are wrk's latency percentiles.
	P50, P99 time.Duration
	// Errors are socket errors (connect, read, write, timeout) and non-2xx responses.
	Errors int
}

// WRK runs wrk (the Debian package, a C epoll load generator) in netns against url for d with
// threads and connections, every request on a new connection (Connection: close).
func WRK(ctx context.Context, netns, url string, threads, connections int, d time.Duration) (WRKResult, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return WRKResult{}, fmt.Errorf("find wrk (hack/ensure-tools.sh installs it): %w", err)
	}
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netns, "wrk", "--latency", "-H", "Connection: close",
		"-t", strconv.Itoa(threads), "-c", strconv.Itoa(connections), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "2s", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return WRKResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	return ParseWRK(string(out))
}

var (
	wrkRate    = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPercent = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkSocket  = regexp.MustCompile(`(?m)^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: (\d+)`)
	wrkTotal   = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
)

// ParseWRK reads wrk --latency output.
func ParseWRK(out string) (WRKResult, error) {
	var r WRKResult
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec line: %q", out)
	}
	r.RequestsPerSec, _ = strconv.ParseFloat(m[1], 64)
	if t := wrkTotal.FindStringSubmatch(out); t != nil && t[1] == "0" {
		return r, fmt.Errorf("wrk completed no request: %q", out)
	}
	for _, p := range wrkPercent.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[p[3]]
		d := time.Duration(v * float64(unit))
		if p[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		for _, n := range s[1:] {
			v, _ := strconv.Atoi(n)
			r.Errors += v
		}
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		v, _ := strconv.Atoi(s[1])
		r.Errors += v
	}
	return r, nil
}
