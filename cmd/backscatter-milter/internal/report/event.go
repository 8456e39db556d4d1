package report

import (
	"go.uber.org/zap"
)

// An operator's decision about a held message is logged beside the
// verdicts, as one line the report joins by queue ID:
//
//	{"level":"info","ts":"…","msg":"quarantine","event":"released","queue_id":"4F1A2C0DE","operator":"alice","mta":"postfix"}
//
// Readers that predate it see a line that is not a verdict and skip it.
const (
	EventMsg      = "quarantine"
	EventReleased = "released" // sent on: the verdict was a false positive
	EventDeleted  = "deleted"  // removed from the queue: the verdict was right
)

// Event is one operator action on a held message.
type Event struct {
	Event    string // EventReleased or EventDeleted
	QueueID  string
	Operator string // login of the person who ran the command
	MTA      string // "postfix" or "sendmail"
}

// LogEvent writes ev as an event line; the quarantine command calls it
// with the daemon's own logger configuration, so the line lands where the
// verdicts are.
func LogEvent(log *zap.Logger, ev Event) {
	log.Info(EventMsg, zap.String("event", ev.Event), zap.String("queue_id", ev.QueueID),
		zap.String("operator", ev.Operator), zap.String("mta", ev.MTA))
}
