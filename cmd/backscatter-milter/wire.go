package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/selfwatch"
	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/auth"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// runtime is everything built from one configuration.
type runtime struct {
	cfg     *config.Config
	comp    *config.Compiled
	engine  *policy.Engine
	lists   *dnsbl.Checker // nil without zones
	store   sent.Store     // nil in offline tests
	stopBg  context.CancelFunc
	resolve resolver.Resolver
	watch   *selfwatch.Watcher // nil unless self_watch.egress is set
	dsn     *milter.DSNCheck   // Sendmail DSN self-check; nil unless ndr_suppression.sendmail is case-variant
}

// buildOptions tune build for the commands that are not the server.
type buildOptions struct {
	offline   bool       // no DNS at all (test --offline)
	store     sent.Store // use this sent log instead of opening one
	noHealth  bool       // do not start periodic zone health checks
	authStore *policy.AuthMemory
	// sentHealth receives the sent log's failures (nil: not reported);
	// counts, the SPF, DKIM and BATV outcomes (nil: not counted).
	sentHealth *sent.Health
	counts     *policyCounts
}

// build turns a valid configuration into a working engine.
func build(cfg *config.Config, comp *config.Compiled, log *zap.Logger, o buildOptions) (*runtime, error) {
	rt := &runtime{cfg: cfg, comp: comp}
	eng := &policy.Engine{Settings: comp.Settings, AuthMemory: o.authStore}
	if eng.AuthMemory == nil && cfg.InternalBounce.Listen != "" {
		// Only the internal-bounce role reads it: without that role, keeping
		// a verdict per inbound message costs time and memory for nothing.
		eng.AuthMemory = policy.NewAuthMemory(100_000, 7*24*time.Hour)
	}
	bg, cancel := context.WithCancel(context.Background())
	rt.stopBg = cancel

	var checker *auth.Checker // nil offline
	if !o.offline {
		r, err := resolver.New(cfg.Resolver, cfg.DNSBL.Timeout.D())
		if err != nil {
			cancel()
			return nil, fmt.Errorf("resolver: %w", err)
		}
		rt.resolve = r
		if len(comp.Zones) > 0 {
			c, err := dnsbl.New(comp.Zones, r, dnsbl.Options{
				Timeout: cfg.DNSBL.Timeout.D(), MinTTL: cfg.DNSBL.MinTTL.D(), MaxTTL: cfg.DNSBL.MaxTTL.D(),
				CacheSize: cfg.DNSBL.CacheSize, FetchTXT: cfg.DNSBL.FetchTXT, Logger: log.Named("dnsbl"),
			})
			if err != nil {
				cancel()
				return nil, fmt.Errorf("dnsbl: %w", err)
			}
			rt.lists = c
			eng.Lists = listsAdapter{c}
			if !o.noHealth {
				go c.RunHealth(bg, cfg.DNSBL.HealthInterval.D())
			}
		}
		// SPF and DKIM answers are kept for their TTL; the DNSBL checker
		// above has its own cache and asks r directly.
		checker = &auth.Checker{Resolver: resolver.NewCache(r, 0, 0), Timeout: cfg.Limits.Timeout.D()}
		eng.Auth = returnPath{c: checker, counts: o.counts}
		if comp.SelfWatch != nil {
			w, err := newSelfWatch(cfg, comp.SelfWatch, r, log)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("self_watch: %w", err)
			}
			rt.watch = w
			if !o.noHealth {
				go w.Run(bg)
			}
		}
	}
	if rt.dsn = newDSNCheck(cfg, log); rt.dsn != nil && !o.noHealth {
		go rt.dsn.Run(bg)
	}

	if cfg.BATV.Enabled {
		s := &batv.Signer{Keys: comp.BATVKeys, Current: cfg.BATV.CurrentKey, Lifetime: cfg.BATV.Lifetime.D(),
			Syntax: comp.BATVSyntax, Delimiter: cfg.BATV.Delimiter}
		if err := s.Validate(); err != nil {
			cancel()
			return nil, err
		}
		eng.Tagger = tagger{s: s, scope: comp.BATVScope, counts: o.counts}
	}
	prov, err := buildProvenance(cfg, comp, checker, o.offline)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("provenance: %w", err)
	}
	eng.Provenance = prov

	switch {
	case o.store != nil:
		rt.store = o.store // already watched by the build that opened it
	case cfg.SentLog.Backend == "memory":
		rt.store = sent.Watch(sent.NewMemory(cfg.SentLog.TTL.D()), o.sentHealth)
	case cfg.SentLog.Backend == "redis":
		st, err := sent.NewRedis(comp.Redis, cfg.SentLog.TTL.D())
		if err != nil {
			cancel()
			return nil, fmt.Errorf("sent_log: %w", err)
		}
		rt.store = sent.Watch(st, o.sentHealth)
	default:
		st, err := sent.OpenBoltHealth(cfg.SentLog.Path, cfg.SentLog.TTL.D(), o.sentHealth)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("sent_log.path: %w", err)
		}
		rt.store = sent.Watch(st, o.sentHealth)
	}
	eng.Sent = rt.store
	rt.engine = eng
	return rt, nil
}

// milterOptions are the milter.Server options of a configuration: `serve`
// and `test` build their servers from them, so both run the same sessions
// with the same limits.
func milterOptions(cfg *config.Config, comp *config.Compiled, role milter.Role, engine func() *policy.Engine, log *zap.Logger, obs milter.Observer) milter.Options {
	return milter.Options{Role: role, Engine: engine, Log: log, OnError: comp.OnError,
		MaxHeaderBytes: cfg.Limits.HeaderBytes, Timeout: cfg.Limits.Timeout.D(), Observer: obs,
		MaxConnections: cfg.Limits.MaxConnections}
}

// close releases what build opened, except a store passed in by the caller.
func (rt *runtime) close(keepStore bool) {
	rt.stopBg()
	if rt.store != nil && !keepStore {
		rt.store.Close()
	}
}

// listsAdapter presents a dnsbl.Checker to the policy.
type listsAdapter struct{ c *dnsbl.Checker }

func (a listsAdapter) Start(ctx context.Context, ip netip.Addr, bounceClass bool) policy.PendingLists {
	return pendingAdapter{a.c.Start(ctx, ip, bounceClass)}
}

type pendingAdapter struct{ p *dnsbl.Pending }

func (p pendingAdapter) Wait(ctx context.Context) ([]policy.Listing, []string) {
	res := p.p.Wait(ctx)
	return listings(res)
}

// listings turns a dnsbl result into policy listings and notes.
func listings(res dnsbl.Result) ([]policy.Listing, []string) {
	var ls []policy.Listing
	var notes []string
	for _, z := range res.Zones {
		if z.Listed {
			ls = append(ls, policy.Listing{Zone: z.Zone.Name, Weight: z.Weight, Detail: z.Detail()})
		}
		if n := z.Note(); n != "" {
			notes = append(notes, n)
		}
	}
	return ls, notes
}

// tagger presents a batv.Signer to the policy.
type tagger struct {
	s      *batv.Signer
	scope  batv.Scope
	counts *policyCounts
}

func (t tagger) Enabled(domain string) bool { return t.scope.Applies(domain) }
func (t tagger) Sign(addr string) (string, error) {
	signed, err := t.s.Sign(addr)
	t.counts.batvSigned(err)
	return signed, err
}
func (t tagger) Verify(addr string) policy.TagStatus {
	switch t.s.Verify(addr).Status {
	case batv.StatusOK:
		return policy.TagOK
	case batv.StatusMissing:
		return policy.TagMissing
	case batv.StatusExpired:
		return policy.TagExpired
	}
	return policy.TagBad
}
func (t tagger) Strip(addr string) string { return t.s.Strip(addr) }
func (t tagger) Grace(now time.Time) bool { return t.scope.InGrace(now) }

// returnPath presents an auth.Checker to the policy.
type returnPath struct {
	c      *auth.Checker
	counts *policyCounts
}

func (r returnPath) SPF(ctx context.Context, ip netip.Addr, helo, mailFrom string) (string, string, error) {
	if !ip.IsValid() {
		return auth.SPFNone, "", nil
	}
	res, dom, err := r.c.SPF(ctx, ip, helo, mailFrom)
	r.counts.spfResult(res)
	return res, dom, err
}

func (r returnPath) Result(ctx context.Context, spf string, raw []byte, mailFrom string) (policy.AuthResult, string) {
	res, why, sigs := r.c.Judge(ctx, spf, raw, mailFrom)
	for _, s := range sigs {
		r.counts.dkimResult(s.Valid, s.Aligned)
	}
	switch res {
	case auth.Authenticated:
		return policy.Authenticated, why
	case auth.Forged:
		return policy.Forged, why
	case auth.Unknown:
		return policy.AuthUnknown, why
	}
	return policy.Unauthenticated, why
}

func (r returnPath) HasAlignedSignature(sigs []string, mailFrom string) bool {
	return auth.MayAlign(sigs, mailFrom)
}
