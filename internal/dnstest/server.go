// Package dnstest runs a real DNS server (miekg/dns) on a random loopback
// port for tests: records come from zone-file text, and per-name faults
// (delay, SERVFAIL, REFUSED, truncation, garbage) let tests exercise every
// failure path of a real resolver client without mocks.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault changes how the server answers a name.
type Fault struct {
	Delay    time.Duration // wait before answering
	Rcode    int           // answer with this rcode (e.g. dns.RcodeServerFailure) and no records
	Truncate bool          // over UDP answer empty with TC set, so the client retries over TCP
	Garbage  bool          // over UDP write bytes that are not a DNS message
	Drop     bool          // never answer (the client times out)
}

// Server is a running test DNS server. Its methods are safe for concurrent use.
type Server struct {
	Addr string // host:port, same port for UDP and TCP

	mu      sync.Mutex
	records map[string][]dns.RR // key: lowercased FQDN
	faults  map[string]Fault    // key: lowercased FQDN, or "*" for every name
	queries map[string]int      // key: "name TYPE"
	udp     *dns.Server
	tcp     *dns.Server
}

// Start starts a server on 127.0.0.1 with the records of zone (zone-file
// syntax; $ORIGIN and $TTL allowed) and stops it when the test ends.
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	s, err := New(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server like Start, for use outside tests (benchmarks in main packages).
func New(zone string) (*Server, error) {
	s := &Server{records: map[string][]dns.RR{}, faults: map[string]Fault{}, queries: map[string]int{}}
	if err := s.AddZone(zone); err != nil {
		return nil, err
	}
	pc, ln, err := listenPair()
	if err != nil {
		return nil, err
	}
	s.Addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP)}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP)}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	return s, nil
}

// listenPair opens UDP and TCP on one free loopback port. The UDP port is
// chosen by the kernel; on a busy machine its TCP twin may be taken, so it
// tries again with another port.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 50 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("dnstest: no port free for both UDP and TCP: %w", lastErr)
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// AddZone adds the records of zone-file text.
func (s *Server) AddZone(zone string) error {
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "dnstest")
	s.mu.Lock()
	defer s.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	return nil
}

// SetFault makes the server misbehave for name ("*" for every name); a zero Fault clears it.
func (s *Server) SetFault(name string, f Fault) {
	key := "*"
	if name != "*" {
		key = strings.ToLower(dns.Fqdn(name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == (Fault{}) {
		delete(s.faults, key)
		return
	}
	s.faults[key] = f
}

// Queries returns how many questions for name and type (e.g. "A") arrived over UDP and TCP.
func (s *Server) Queries(name, qtype string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(dns.Fqdn(name))+" "+qtype]
}

// TotalQueries returns the number of questions received.
func (s *Server) TotalQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

func (s *Server) serveUDP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, true) }
func (s *Server) serveTCP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, false) }

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, udp bool) {
	if len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name+" "+dns.TypeToString[q.Qtype]]++
	f, ok := s.faults[name]
	if !ok {
		f = s.faults["*"]
	}
	var answer []dns.RR
	exists := false
	for _, rr := range s.records[name] {
		exists = true
		if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
			answer = append(answer, dns.Copy(rr))
		}
	}
	s.mu.Unlock()

	if f.Drop {
		return
	}
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	if udp && f.Garbage {
		w.Write([]byte("\x00\x01garbage, not a DNS message"))
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	switch {
	case f.Rcode != 0:
		m.Rcode = f.Rcode
	case udp && f.Truncate:
		m.Truncated = true
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa(name)}
	case len(answer) == 0:
		m.Ns = []dns.RR{soa(name)}
	default:
		m.Answer = answer
	}
	w.WriteMsg(m)
}

func soa(name string) dns.RR {
	rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60", name))
	return rr
}
