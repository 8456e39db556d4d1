package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	config.Flags(fs)
	cpuProfileFlag(fs)
	if done, code := parse(fs, args); done {
		return code
	}
	stopProfile, err := startCPUProfile(fs)
	if err != nil {
		fmt.Fprintf(stderr, "backscatter-milter: %v\n", err)
		return exitUsage
	}
	defer stopProfile()
	cfg, comp, err := config.FromFlags(fs)
	if err != nil {
		if _, isList := config.AsProblems(err); isList && cfg != nil {
			fmt.Fprintf(stderr, "backscatter-milter: %s: %v\n", cfg.Source, err)
		} else {
			fmt.Fprintf(stderr, "backscatter-milter: %v\n", err)
		}
		return exitUsage
	}
	logs, err := newLogging(cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "backscatter-milter: %v\n", err)
		return exitUsage
	}
	defer logs.close()
	log := logs.Logger
	routeLibraryLogs(log)
	// fatal logs why the daemon stops, and says it on stderr too when the
	// log is a file: systemctl status and the journal show stderr, and
	// nobody should have to find the log file to learn why it did not start.
	fatal := func(msg string, err error) int {
		log.Error(msg, zap.Error(err))
		if !logs.toStderr() {
			fmt.Fprintf(stderr, "backscatter-milter: %s: %v\n", msg, err)
		}
		return exitFail
	}
	// Signals are caught before anything starts: a SIGHUP sent as soon as
	// "started" is logged must reload, not kill the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	d, err := newDaemon(cfg, comp, log)
	if err != nil {
		return fatal("cannot start", err)
	}
	go func() {
		for s := range sigs {
			if s == syscall.SIGHUP {
				// logrotate's postrotate sends SIGHUP: the log file is
				// reopened whatever becomes of the configuration reload.
				if err := logs.reopen(); err != nil {
					log.Error("log.file not reopened: logging goes on to the old file", zap.Error(err))
				}
				d.reload(fs)
				continue
			}
			d.shutdown()
			return
		}
	}()
	if err := d.wait(); err != nil {
		return fatal("milter server stopped", err)
	}
	return exitOK
}

// daemon is a running milter: its listeners, servers and current runtime.
type daemon struct {
	log     *zap.Logger
	cfg     *config.Config
	rt      atomic.Pointer[runtime]
	servers []*milter.Server
	errs    chan error
	wg      sync.WaitGroup
	mu      sync.Mutex // serialises reloads
	metrics *metricsServer
	// sentHealth outlives reloads, as the store does: metrics and
	// /healthz read it.
	sentHealth *sent.Health
	stop       sync.Once
	stopped    chan struct{} // closed when shutdown has finished
}

func newDaemon(cfg *config.Config, comp *config.Compiled, log *zap.Logger) (*daemon, error) {
	d := &daemon{log: log, cfg: cfg, errs: make(chan error, 2), stopped: make(chan struct{})}
	d.sentHealth = sent.NewHealth(cfg.SentLog.Backend, sentLogEvents(log.Named("sent_log")))
	var err error
	// Metrics first: the counters exist (at 0) before anything counts.
	d.metrics, err = startMetrics(cfg.Metrics.Listen, d, log)
	if err != nil {
		return nil, err
	}
	rt, err := build(cfg, comp, log, buildOptions{sentHealth: d.sentHealth, counts: d.metrics.counts})
	if err != nil {
		d.metrics.close()
		return nil, err
	}
	d.rt.Store(rt)
	d.metrics.addEvidence(zoneEvidence(comp))
	engine := func() *policy.Engine { return d.rt.Load().engine }
	type role struct {
		spec string
		r    milter.Role
	}
	roles := []role{{cfg.Listen, milter.RoleSMTPD}}
	if cfg.InternalBounce.Listen != "" {
		roles = append(roles, role{cfg.InternalBounce.Listen, milter.RoleInternalBounce})
	}
	var lns []net.Listener
	for _, ro := range roles {
		ln, err := milter.Listen(ro.spec, milter.SocketOptions{Mode: comp.SocketMode, Group: cfg.Socket.Group})
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			rt.close(false)
			d.metrics.close()
			return nil, err
		}
		lns = append(lns, ln)
		opts := milterOptions(cfg, comp, ro.r, engine, log, d.metrics.observer())
		opts.SendmailDSN = func() *milter.DSNCheck { return d.rt.Load().dsn }
		srv := milter.NewServer(opts)
		d.servers = append(d.servers, srv)
		d.wg.Add(1)
		go func(ln net.Listener) {
			defer d.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, milter.ErrServerClosed) {
				d.errs <- err
			}
		}(ln)
		log.Info("listening", zap.String("listen", ro.spec), zap.String("role", roleName(ro.r)))
	}
	logWarnings(log, cfg)
	log.Info("started", zap.String("version", version), zap.String("config", cfg.Source),
		zap.String("mode", cfg.Mode), zap.Int("zones", len(comp.Zones)), zap.Bool("batv", cfg.BATV.Enabled),
		zap.Bool("ndr_suppression", cfg.NDR.Enabled), zap.String("sent_log", cfg.SentLog.Backend))
	return d, nil
}

// logWarnings logs what config check warns about, at every start and
// reload, so that a risky setting is never silent.
func logWarnings(log *zap.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings(time.Now()) {
		log.Warn("configuration: "+w.Msg, zap.String("key", w.Key))
	}
}

// zoneEvidence names the evidence of the configured DNSBL zones, so their
// counters exist from the start.
func zoneEvidence(comp *config.Compiled) []string {
	var names []string
	for _, z := range comp.Zones {
		names = append(names, policy.EvDNSBLPrefix+z.Name)
	}
	return names
}

// sentLogEvents logs what the sent log's Health reports.
func sentLogEvents(log *zap.Logger) func(sent.Event) {
	return func(e sent.Event) {
		fields := []zap.Field{zap.String("op", e.Op.String())}
		if e.Err != nil {
			fields = append(fields, zap.Error(e.Err))
		}
		if e.Suppressed > 0 {
			fields = append(fields, zap.Uint64("more_failures_since_last_warning", e.Suppressed))
		}
		if e.MovedTo != "" {
			fields = append(fields, zap.String("moved_to", e.MovedTo))
		}
		switch e.Level {
		case "error":
			log.Error(e.Msg, fields...)
		case "warn":
			log.Warn(e.Msg, fields...)
		default:
			log.Info(e.Msg, fields...)
		}
	}
}

func roleName(r milter.Role) string {
	if r == milter.RoleInternalBounce {
		return "internal-bounce"
	}
	return "smtpd"
}

// wait blocks until the daemon has shut down (a signal) or a server failed.
func (d *daemon) wait() error {
	select {
	case err := <-d.errs:
		d.shutdown()
		return err
	case <-d.stopped:
		return nil
	}
}

// shutdown stops accepting connections and lets sessions in flight finish,
// up to shutdown_timeout; then it closes what is left.
func (d *daemon) shutdown() {
	d.stop.Do(d.drain)
	<-d.stopped
}

func (d *daemon) drain() {
	defer close(d.stopped)
	d.log.Info("shutting down: draining sessions", zap.Stringer("deadline", d.cfg.ShutdownTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout.D())
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range d.servers {
		wg.Add(1)
		go func(s *milter.Server) {
			defer wg.Done()
			if err := s.Shutdown(ctx); err != nil {
				d.log.Warn("sessions still open at the deadline: closing them", zap.Error(err))
				s.Close()
			}
		}(s)
	}
	wg.Wait()
	d.wg.Wait()
	d.metrics.close()
	d.rt.Load().close(false)
	d.log.Info("stopped")
}

// reload reads the configuration again. A bad configuration is logged and
// the running one kept; a good one replaces the engine for new messages
// (messages in flight finish with the engine they started with).
func (d *daemon) reload(fs *pflag.FlagSet) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg, comp, err := config.FromFlags(fs)
	if err != nil {
		d.log.Error("reload refused: the running configuration stays", zap.Error(err))
		d.metrics.reloaded(false)
		return
	}
	old := d.rt.Load()
	if cfg.Listen != d.cfg.Listen || cfg.InternalBounce.Listen != d.cfg.InternalBounce.Listen {
		d.log.Warn("listen addresses change only at restart")
	}
	if cfg.Log != d.cfg.Log {
		d.log.Warn("log settings change only at restart (SIGHUP reopens log.file under its name)")
	}
	// The sent log is kept across reloads: bbolt allows one opener per file.
	if !reflect.DeepEqual(cfg.SentLog, old.cfg.SentLog) {
		d.log.Warn("sent_log changes only at restart; keeping the running one")
	}
	rt, err := build(cfg, comp, d.log, buildOptions{store: old.store, authStore: old.engine.AuthMemory,
		sentHealth: d.sentHealth, counts: d.metrics.counts})
	if err != nil {
		d.log.Error("reload failed: the running configuration stays", zap.Error(err))
		d.metrics.reloaded(false)
		return
	}
	d.rt.Store(rt)
	d.metrics.addEvidence(zoneEvidence(comp))
	logWarnings(d.log, cfg)
	old.close(true)
	d.log.Info("configuration reloaded", zap.String("config", cfg.Source), zap.String("mode", cfg.Mode), zap.Int("zones", len(comp.Zones)))
	d.metrics.reloaded(true)
}
