package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/flows"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// runFlows reads the datapath's flow events into a bounded history and serves it to `kubedirect agent
// flows` on the flow socket, until ctx ends.
func (a *Agent) runFlows(ctx context.Context) {
	h := flows.NewHistory(a.cfg.FlowHistory)
	srv := &flows.Server{
		Node:    a.node,
		History: h,
		RingLost: func() (uint64, error) {
			c, err := a.dp.Maps.ReadMetrics()
			return c.EventsLost, err
		},
		Override: a.overrideSample,
		Log:      a.log,
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := flows.Read(ctx, a.dp.Maps.Events, a.node, h); err != nil {
			a.log.Error("flow events are not read: kubedirect monitor shows nothing of this node", "err", err)
		}
	})
	if err := srv.Serve(ctx, flows.SocketPath(a.cfg.CNIDataDir)); err != nil {
		a.log.Error("flow socket: kubedirect monitor cannot reach this node", "err", err)
	}
	wg.Wait()
}

// overrideSample raises the datapath's event rate to one in rate new flows until d from now, for a
// monitor session (flows.Server.Override). The deadline is in kd_config, so the default rate returns
// even if nobody calls end.
func (a *Agent) overrideSample(rate uint32, d time.Duration) (end func(), err error) {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	c, err := a.dp.Maps.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("read datapath config: %w", err)
	}
	until := maps.MonotonicNow() + uint64(d)
	c.SampleOverride, c.OverrideUntil = rate, until
	if err := a.dp.Maps.SetConfig(c); err != nil {
		return nil, fmt.Errorf("write datapath config: %w", err)
	}
	return func() {
		a.cfgMu.Lock()
		defer a.cfgMu.Unlock()
		c, err := a.dp.Maps.GetConfig()
		if err != nil || c.OverrideUntil != until {
			return // another session set its own since
		}
		c.SampleOverride, c.OverrideUntil = 0, 0
		if err := a.dp.Maps.SetConfig(c); err != nil {
			a.log.Warn("end monitor sample override: it lapses at its deadline", "err", err)
		}
	}, nil
}
