package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Test points every DNSBL publishes (RFC 5782 §5): 127.0.0.2 must be
// listed, 127.0.0.1 must not be.
var (
	TestPointListed    = netip.AddrFrom4([4]byte{127, 0, 0, 2})
	TestPointNotListed = netip.AddrFrom4([4]byte{127, 0, 0, 1})
)

// ErrUnhealthy wraps every health check failure.
var ErrUnhealthy = errors.New("dnsbl: zone unhealthy")

// CheckHealth asks every zone about its test points, bypassing the cache,
// and records the outcome: a zone that fails is skipped by checks
// (StatusSkippedHealth) until a later health check passes. It returns the
// outcome per zone name, nil for a healthy zone.
//
// A zone that lists 127.0.0.1 is unhealthy because a list that answers
// everything (retired lists do this on purpose) would hit every client.
// A zone that does not list 127.0.0.2, or does not answer, is unhealthy
// because its answers say nothing; skipping it saves a timeout per message.
func (c *Checker) CheckHealth(ctx context.Context) map[string]error {
	out := make(map[string]error, len(c.names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range c.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.checkZone(ctx, name)
			mu.Lock()
			out[name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		// Our caller gave up (shutdown): the failures say nothing about the zones.
		return out
	}
	c.hmu.Lock()
	for name, err := range out {
		if err != nil && c.health[name] == nil {
			c.opts.Logger.Warn("dnsbl zone unhealthy, skipping it", zap.String("zone", name), zap.Error(err))
		} else if err == nil && c.health[name] != nil {
			c.opts.Logger.Info("dnsbl zone healthy again", zap.String("zone", name))
		}
		c.health[name] = err
	}
	c.hmu.Unlock()
	return out
}

func (c *Checker) checkZone(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var listed, unlisted outcome
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); listed, _ = c.ask(ctx, QueryName(TestPointListed, name)) }()
	go func() { defer wg.Done(); unlisted, _ = c.ask(ctx, QueryName(TestPointNotListed, name)) }()
	wg.Wait()
	switch {
	case listed.err != nil:
		return fmt.Errorf("%w: %s: test point %v: %w", ErrUnhealthy, name, TestPointListed, listed.err)
	case len(listed.answers) == 0:
		return fmt.Errorf("%w: %s: test point %v is not listed", ErrUnhealthy, name, TestPointListed)
	case unlisted.err != nil:
		return fmt.Errorf("%w: %s: test point %v: %w", ErrUnhealthy, name, TestPointNotListed, unlisted.err)
	case len(unlisted.answers) != 0:
		return fmt.Errorf("%w: %s: test point %v is listed (%v): the zone lists everything", ErrUnhealthy, name, TestPointNotListed, unlisted.answers)
	}
	return nil
}

// Health returns the last health check outcome per zone name (nil:
// healthy). Zones never checked are absent.
func (c *Checker) Health() map[string]error {
	c.hmu.RLock()
	defer c.hmu.RUnlock()
	out := make(map[string]error, len(c.health))
	for k, v := range c.health {
		out[k] = v
	}
	return out
}

// RunHealth checks health at once and then every interval until ctx ends.
func (c *Checker) RunHealth(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.CheckHealth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthy reports whether checks should ask zone: never checked or passed.
func (c *Checker) healthy(zone string) bool {
	c.hmu.RLock()
	defer c.hmu.RUnlock()
	return c.health[zone] == nil
}
