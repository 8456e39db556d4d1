package report

import (
	"encoding/json"
	"io"
	"time"
)

// Report is every figure of a review. Units: Messages, NDR and the
// end-of-message parts of Backscatter count messages (one end-of-message or
// internal-bounce verdict each); Rcpt and BlockedAtRcpt count recipients
// (one RCPT verdict each); Callouts counts null-sender probes.
type Report struct {
	Period      Period         `json:"period"`
	Input       Input          `json:"input"`
	Messages    Messages       `json:"messages"`
	Rcpt        Rcpt           `json:"rcpt"`
	Callouts    int            `json:"callouts"`
	Backscatter Backscatter    `json:"backscatter"`
	NDR         NDR            `json:"ndr"`
	Observe     Observe        `json:"observe"`
	Evidence    []EvidenceStat `json:"evidence"`                // most fired first
	TopClients  []Count        `json:"top_clients"`             // inbound, not plainly accepted (or would not be)
	TopSources  []Count        `json:"top_backscatter_sources"` // client IPs of blocked backscatter
	TopZones    []Count        `json:"top_dnsbl_zones"`         // dnsbl:<zone> evidence fired
	TopTargets  []Count        `json:"top_targets"`             // local addresses hit by blocked backscatter
	Hourly      []Bucket       `json:"hourly"`                  // decisions per hour (messages + RCPT rejects)
	Daily       []Bucket       `json:"daily"`                   // and per day
	// Approximate is true when a table outgrew Options.MaxKeys (or the
	// hour/day limits) and its rarest rows were dropped.
	Approximate bool `json:"approximate"`
}

// Period is the time span of the review.
type Period struct {
	Since *time.Time `json:"since,omitempty"` // --since, if given
	Until *time.Time `json:"until,omitempty"` // --until, if given
	First *time.Time `json:"first,omitempty"` // first verdict counted
	Last  *time.Time `json:"last,omitempty"`  // last verdict counted
	TZ    string     `json:"tz"`              // zone of hours and days
}

// Input says what was read.
type Input struct {
	Files        int      `json:"files"`
	Lines        int      `json:"lines"`
	Verdicts     int      `json:"verdicts"`      // verdict lines counted
	Other        int      `json:"other"`         // other log lines, ignored
	Malformed    int      `json:"malformed"`     // broken or truncated lines, skipped
	OutsideRange int      `json:"outside_range"` // verdicts outside --since/--until
	NoTime       int      `json:"no_time"`       // verdicts without a time while --since/--until is set
	Unbucketed   int      `json:"unbucketed"`    // decisions without a time: in totals, not in hours and days
	Errors       []string `json:"errors,omitempty"`
}

// Messages are end-of-message (and internal-bounce) verdicts.
type Messages struct {
	Total             int                       `json:"total"`
	ByAction          map[string]int            `json:"by_action"`
	ByDirection       map[string]int            `json:"by_direction"`
	ByDirectionAction map[string]map[string]int `json:"by_direction_action"`
}

// Rcpt counts recipients refused at RCPT.
type Rcpt struct {
	Rejected            int `json:"rejected"`
	RejectedBounceClass int `json:"rejected_bounce_class"` // sender <>, postmaster@ or mailer-daemon@
}

// Backscatter is what the milter is for: forged bounces and auto-replies
// stopped, real ones let through.
type Backscatter struct {
	// Blocked = BlockedAtRcpt + the sum of BlockedAtEOM.
	Blocked int `json:"blocked"`
	// BlockedAtRcpt: recipients of bounce-class mail refused at RCPT.
	BlockedAtRcpt int `json:"blocked_at_rcpt"`
	// BlockedAtEOM: inbound bounce-class or auto-reply messages by action (reject, quarantine, discard).
	BlockedAtEOM map[string]int `json:"blocked_at_eom"`
	// RealBouncesDelivered: inbound bounce-class or auto-reply messages
	// accepted or tagged with evidence that they answer our mail
	// (bounce:ours, bounce:ours-relay, batv:ok, autoreply:ours); by that evidence.
	RealBouncesDelivered int            `json:"real_bounces_delivered"`
	RealBouncesBy        map[string]int `json:"real_bounces_by"`
	// OwnNDRsStopped: our MTA's own NDRs to forged senders (internal-bounce role) by action.
	OwnNDRsStopped map[string]int `json:"own_ndrs_stopped"`
}

// NDR counts messages rewritten so our MTA never notifies a possibly forged sender.
type NDR struct {
	Suppressed         int `json:"suppressed"`           // NOTIFY=NEVER on every recipient
	SuccessDSNStripped int `json:"success_dsn_stripped"` // NOTIFY=SUCCESS/DELAY, RET=FULL removed
}

// Observe counts decisions that observe mode did not carry out.
type Observe struct {
	Verdicts        int            `json:"verdicts"`          // verdict lines written in observe mode
	WouldMessages   map[string]int `json:"would_messages"`    // messages by the action enforce mode would have taken
	WouldRejectRcpt int            `json:"would_reject_rcpt"` // recipients enforce mode would have refused at RCPT
}

// EvidenceStat says how often a piece of evidence fired (any verdict) and
// how often it decided (it weighed most on a verdict whose action was not accept).
type EvidenceStat struct {
	Name    string `json:"name"`
	Fired   int    `json:"fired"`
	Decided int    `json:"decided"`
}

// Count is one row of a "top" table.
type Count struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// Bucket is the decisions of one hour ("2006-01-02T15") or day ("2006-01-02").
type Bucket struct {
	Start    string         `json:"start"`
	Total    int            `json:"total"`
	ByAction map[string]int `json:"by_action"`
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
