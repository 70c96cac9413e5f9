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
	cmd.AddCommand(newEchoClientCommand(g))
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
