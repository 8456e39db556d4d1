package report

import (
	"encoding/json"
	"io"
	"time"
)

// Schema is the version of the JSON document. 2: messages and recipients
// counted apart (backscatter.blocked_messages, refused_recipients), times
// and bucket starts in RFC 3339, generated, quarantine, observe sources.
const Schema = 2

// Report is every figure of a review. Units: Messages, NDR, Quarantine and
// the end-of-message parts of Backscatter count messages (one
// end-of-message or internal-bounce verdict each); Rcpt and
// RefusedRecipients count recipients (one RCPT verdict each); Callouts
// counts null-sender probes; the top client and source lists count
// transactions (the RCPT and end-of-message lines of one transaction,
// joined by session ID, count once).
type Report struct {
	Schema      int            `json:"schema"`
	Generated   Generated      `json:"generated"`
	Period      Period         `json:"period"`
	Input       Input          `json:"input"`
	Messages    Messages       `json:"messages"`
	Rcpt        Rcpt           `json:"rcpt"`
	Callouts    int            `json:"callouts"`
	Backscatter Backscatter    `json:"backscatter"`
	NDR         NDR            `json:"ndr"`
	Observe     Observe        `json:"observe"`
	Quarantine  Quarantine     `json:"quarantine"`
	Evidence    []EvidenceStat `json:"evidence"`                // most fired first
	TopClients  []Count        `json:"top_clients"`             // inbound transactions not plainly accepted (or that would not be)
	TopSources  []Count        `json:"top_backscatter_sources"` // client IPs of blocked backscatter (released messages left out)
	TopZones    []Count        `json:"top_dnsbl_zones"`         // dnsbl:<zone> evidence fired
	TopTargets  []Count        `json:"top_targets"`             // local addresses hit by blocked backscatter
	Hourly      []Bucket       `json:"hourly"`                  // decisions per hour (messages + RCPT rejects)
	Daily       []Bucket       `json:"daily"`                   // and per day
	// Approximate is true when a table outgrew Options.MaxKeys (or the
	// hour/day limits) and its rarest rows were dropped.
	Approximate bool `json:"approximate"`
}

// Generated says when, where and with which configuration the report was made.
type Generated struct {
	At     time.Time `json:"at"`
	Host   string    `json:"host"`
	Mode   string    `json:"mode"`   // mode of the configuration read ("" when none)
	Config string    `json:"config"` // the configuration file, or "embedded defaults"
}

// Period is the time span of the review.
type Period struct {
	Since *time.Time `json:"since,omitempty"` // --since, if given
	Until *time.Time `json:"until,omitempty"` // --until, if given
	First *time.Time `json:"first,omitempty"` // first verdict counted
	Last  *time.Time `json:"last,omitempty"`  // last verdict counted
	TZ    string     `json:"tz"`              // zone of hours and days, e.g. Europe/Berlin
}

// Input says what was read.
type Input struct {
	Files        int      `json:"files"`
	FileNames    []string `json:"file_names,omitempty"` // "-" is standard input
	Lines        int      `json:"lines"`
	Verdicts     int      `json:"verdicts"`      // verdict lines counted
	Events       int      `json:"events"`        // operator event lines (released, deleted)
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
// stopped, real ones let through. Messages and recipients are counted
// apart: one refused recipient is not one message.
type Backscatter struct {
	// BlockedMessages: inbound bounce-class or auto-reply messages
	// rejected, quarantined or discarded at end of message, less those an
	// operator released; the sum of BlockedAtEOM.
	BlockedMessages int            `json:"blocked_messages"`
	BlockedAtEOM    map[string]int `json:"blocked_at_eom"`
	// RefusedRecipients: recipients of bounce-class mail refused at RCPT.
	RefusedRecipients int `json:"refused_recipients"`
	// RealBouncesDelivered: inbound bounce-class or auto-reply messages
	// accepted or tagged with evidence that they answer our mail
	// (bounce:ours, bounce:ours-relay, batv:ok, autoreply:ours); by that evidence.
	RealBouncesDelivered int            `json:"real_bounces_delivered"`
	RealBouncesBy        map[string]int `json:"real_bounces_by"`
	// OwnNDRsStopped: our MTA's own NDRs to forged senders (internal-bounce
	// role) by action, less those released.
	OwnNDRsStopped map[string]int `json:"own_ndrs_stopped"`
}

// NDR counts messages rewritten so our MTA never notifies a possibly forged sender.
type NDR struct {
	Suppressed         int            `json:"suppressed"`           // NOTIFY=NEVER on every recipient
	SuccessDSNStripped int            `json:"success_dsn_stripped"` // NOTIFY=SUCCESS/DELAY removed, RET=FULL made RET=HDRS
	Other              map[string]int `json:"other,omitempty"`      // other outcomes, e.g. not-possible-with-sendmail
}

// Observe counts decisions that observe mode did not carry out.
type Observe struct {
	Verdicts        int            `json:"verdicts"`          // verdict lines written in observe mode
	WouldMessages   map[string]int `json:"would_messages"`    // messages by the action enforce mode would have taken
	WouldRejectRcpt int            `json:"would_reject_rcpt"` // recipients enforce mode would have refused at RCPT
	// WouldBlockMessages and WouldRefuseRecipients are the backscatter
	// enforce mode would have stopped: bounce-class or auto-reply messages
	// it would have rejected, quarantined or discarded, and bounce-class
	// recipients it would have refused at RCPT.
	WouldBlockMessages    int `json:"would_block_messages"`
	WouldRefuseRecipients int `json:"would_refuse_recipients"`
	// WouldSuppressNDR and WouldStripSuccessDSN count the NDR rewrites observe mode left out.
	WouldSuppressNDR     int     `json:"would_suppress_ndr"`
	WouldStripSuccessDSN int     `json:"would_strip_success_dsn"`
	TopSources           []Count `json:"top_sources"` // client IPs of the backscatter enforce mode would have stopped
}

// Quarantine is what happened to held messages: the verdicts that put
// them on hold and the operators' releases (false positives) and deletions.
type Quarantine struct {
	Held     int `json:"held"`     // messages quarantined (end of message or internal-bounce role)
	Released int `json:"released"` // of those, released by an operator: false positives
	Deleted  int `json:"deleted"`  // of those, deleted by an operator
	// FalsePositiveRate is Released / Held (0 when nothing was held).
	FalsePositiveRate float64 `json:"false_positive_rate"`
	// ByEvidence is per deciding evidence: held, released and their rate.
	ByEvidence []FalsePositives `json:"by_evidence"`
	// UnmatchedEvents are releases and deletions of queue IDs with no
	// quarantine verdict in the input (held before the period read, say).
	UnmatchedEvents int `json:"unmatched_events"`
	// Messages lists held messages, newest first, at most Options.Held of them.
	Messages []HeldMessage `json:"messages"`
}

// FalsePositives is the release record of one deciding evidence.
type FalsePositives struct {
	Evidence string  `json:"evidence"`
	Held     int     `json:"held"`
	Released int     `json:"released"`
	Rate     float64 `json:"rate"`
}

// HeldMessage is one quarantined message and what became of it.
type HeldMessage struct {
	QueueID  string    `json:"queue_id"`
	Time     time.Time `json:"time"`
	Stage    string    `json:"stage"`
	ClientIP string    `json:"client_ip"`
	Sender   string    `json:"sender"`
	Rcpts    []string  `json:"rcpts"`
	Score    int       `json:"score"`
	Deciding string    `json:"deciding"` // the evidence that weighed most
	Status   string    `json:"status"`   // held, released or deleted
	Operator string    `json:"operator,omitempty"`
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

// Bucket is the decisions of one hour or one day, starting at Start in
// the report's zone.
type Bucket struct {
	Start    time.Time      `json:"start"`
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
