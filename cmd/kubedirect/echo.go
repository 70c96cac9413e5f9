package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/spf13/cobra"
)

func newEchoCommand(g *globals) *cobra.Command {
	s := &echo.Server{}
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Run the echo probe: HTTP and UDP answers that report the source address seen",
		Long: `echo serves HTTP on --http-port and UDP on --udp-port. Each answer is JSON with the source address
(ip:port) the server saw, its pod ($POD_NAME) and node ($NODE_NAME).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s.Logger = g.logger()
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().IntVar(&s.HTTPPort, "http-port", 8080, "HTTP port (0 disables)")
	cmd.Flags().IntVar(&s.UDPPort, "udp-port", 8081, "UDP port (0 disables)")
	cmd.AddCommand(newEchoClientCommand(g), newEchoProbeCommand(g))
	return cmd
}

func newEchoClientCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "client URL",
		Short: "Ask an echo server once (http://host:port/path or udp://host:port) and print its JSON answer",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var r echo.Reply
			var err error
			if addr, ok := strings.CutPrefix(args[0], "udp://"); ok {
				r, err = echo.UDP(ctx, addr)
			} else {
				r, err = echo.GetHTTP(ctx, args[0])
			}
			if err != nil {
				return fmt.Errorf("echo client: %w", err)
			}
			return json.NewEncoder(g.stdout).Encode(r)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}

func newEchoProbeCommand(g *globals) *cobra.Command {
	var o echo.ProbeOptions
	var maxFailures int
	cmd := &cobra.Command{
		Use:   "probe URL",
		Short: "Call a server repeatedly (http://, udp:// or tcp://host:port) and report every attempt",
		Long: `probe calls URL --count times, --interval apart, and prints one JSON line per attempt, then a
summary line: attempts that succeeded and failed, the pods that answered in order, the slowest attempt,
the successes in a row at the end (tailOK).
It fails when more than --max-failures attempts failed. The end-to-end cases run it inside pods.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URL = args[0]
			var sum struct {
				OK, Failed int
				Pods       []string
				Last       string
				MaxMillis  int64
				TailOK     int
			}
			enc := json.NewEncoder(g.stdout)
			echo.Probe(cmd.Context(), o, func(r echo.ProbeResult) {
				_ = enc.Encode(r)
				if !r.OK {
					sum.Failed++
					sum.TailOK = 0
					return
				}
				sum.OK++
				sum.TailOK++
				sum.MaxMillis = max(sum.MaxMillis, r.Millis)
				if r.Pod != "" && (len(sum.Pods) == 0 || sum.Pods[len(sum.Pods)-1] != r.Pod) {
					sum.Pods = append(sum.Pods, r.Pod)
				}
				sum.Last = r.Pod
			})
			_ = enc.Encode(map[string]any{"summary": true, "ok": sum.OK, "failed": sum.Failed, "pods": sum.Pods,
				"last": sum.Last, "maxMs": sum.MaxMillis, "tailOK": sum.TailOK})
			if sum.Failed > maxFailures {
				return fmt.Errorf("echo probe: %d of %d attempts failed", sum.Failed, sum.OK+sum.Failed)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Count, "count", 1, "attempts")
	cmd.Flags().DurationVar(&o.Interval, "interval", 100*time.Millisecond, "time between the starts of two attempts")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Second, "bound of each attempt")
	cmd.Flags().IntVar(&o.SourcePort, "source-port", 0, "UDP: send from this local port every time")
	cmd.Flags().IntVar(&o.Size, "size", 0, "UDP: ask for a reply of this many bytes")
	cmd.Flags().BoolVar(&o.Reuse, "reuse", false, "http: make every attempt a request on one kept connection (never redialled once broken)")
	cmd.Flags().IntVar(&maxFailures, "max-failures", 0, "failed attempts allowed")
	return cmd
}
