package milter

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// logVerdict writes the one line a postmaster greps for: every fact the
// decision rests on, keyed by our session ID and the MTA's queue ID.
// Field values go through zap's encoders, which escape CR, LF and other
// control characters, so SMTP input cannot forge log lines.
func (s *session) logVerdict(v *policy.Verdict) {
	t := s.tx
	s.srv.opts.Observer.Verdict(t, v)
	LogVerdict(s.log, t, v, time.Since(t.Started))
}

// LogVerdict writes a verdict line; `backscatter-milter test` uses it too,
// so offline and online verdicts read the same.
func LogVerdict(log *zap.Logger, t *policy.Transaction, v *policy.Verdict, took time.Duration) {
	cut, cutFields := 0, 0
	fields := []zap.Field{
		zap.String("session", t.SessionID),
		zap.String("queue_id", capField(t.QueueID, &cutFields)),
		zap.String("stage", string(v.Stage)),
		zap.String("action", v.Action.String()),
		zap.String("would", v.Would.String()),
		zap.String("mode", v.Mode.String()),
		zap.Int("score", v.Score),
		zap.Array("evidence", evidenceList(v.Evidence)),
		zap.String("direction", t.Direction.String()),
		zap.String("client_ip", addrString(t)),
		zap.String("client_name", capField(t.ClientName, &cutFields)),
		zap.String("helo", capField(t.Helo, &cutFields)),
		zap.String("sender", "<"+capField(t.Sender, &cutFields)+">"),
	}
	if v.Stage == policy.StageRcpt {
		fields = append(fields, zap.Strings("rcpts", []string{capField(v.Recipient, &cutFields)}))
	} else {
		rcpts := make([]string, 0, len(t.Recipients))
		for _, r := range t.Recipients {
			rcpts = append(rcpts, r.Addr)
		}
		fields = append(fields, zap.Strings("rcpts", capList(rcpts, MaxLogRcptBytes, &cut)))
		if len(t.Rejected) > 0 {
			fields = append(fields, zap.Strings("rejected_rcpts", capList(t.Rejected, MaxLogRcptBytes, &cut)))
		}
	}
	if cut > 0 {
		// The line stays one a log shipper takes; the count says what is missing.
		fields = append(fields, zap.Int("rcpts_not_logged", cut))
	}
	if t.Auth != "" {
		fields = append(fields, zap.Bool("sasl", true)) // the login name is personal data: not logged
	}
	if t.Allowed != "" {
		fields = append(fields, zap.String("allowlisted", t.Allowed))
	}
	if v.Auth != "" {
		fields = append(fields, zap.String("auth", string(v.Auth)), zap.String("auth_detail", v.AuthWhy))
	}
	if v.NDR != "" {
		fields = append(fields, zap.String("ndr", string(v.NDR)))
	}
	if v.Reply != nil {
		fields = append(fields, zap.String("reply", capField(v.Reply.String(), &cutFields)))
	}
	if len(v.Notes) > 0 {
		fields = append(fields, zap.Strings("notes", capList(v.Notes, MaxLogRcptBytes, &cutFields)))
	}
	if cutFields > 0 {
		fields = append(fields, zap.Int("fields_cut", cutFields))
	}
	fields = append(fields, zap.Float64("duration_ms", float64(took.Microseconds())/1000))
	log.Info("verdict", fields...)
}

// MaxLogRcptBytes bounds the recipient addresses one verdict line carries
// (each list: accepted, rejected); the rest are counted in
// rcpts_not_logged. An address longer than that is cut to it.
const MaxLogRcptBytes = 64 << 10

// maxLogField bounds one free-text field of a verdict line (HELO, sender,
// reply): far above anything an MTA passes on, far below what the socket
// could carry.
const maxLogField = 2048

// capField cuts s to maxLogField bytes, counting a cut in *cut.
func capField(s string, cut *int) string {
	if len(s) <= maxLogField {
		return s
	}
	*cut++
	return s[:maxLogField] + "…"
}

// capList returns the first entries of l that fit in max bytes, adding
// the number left out to *cut.
func capList(l []string, max int, cut *int) []string {
	n := 0
	for i, s := range l {
		if n+len(s) > max {
			if i == 0 {
				*cut += len(l) - 1
				return []string{s[:max] + "…"}
			}
			*cut += len(l) - i
			return l[:i]
		}
		n += len(s)
	}
	return l
}

func addrString(t *policy.Transaction) string {
	if t.ClientIP.IsValid() {
		return t.ClientIP.String()
	}
	return ""
}

type evidenceList policy.Evidences

func (es evidenceList) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, e := range es {
		if err := enc.AppendObject(evidenceObj(e)); err != nil {
			return err
		}
	}
	return nil
}

type evidenceObj policy.Evidence

func (e evidenceObj) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("name", e.Name)
	enc.AddInt("weight", e.Weight)
	if e.Detail != "" {
		enc.AddString("detail", e.Detail)
	}
	return nil
}

// logNDRDropped records an NDR that the MTA started through the
// internal-bounce role and abandoned before its content (Postfix does this
// when every recipient it would report on had NOTIFY=NEVER). It is not a
// verdict: nothing was decided, nothing was sent, and it must not count as
// a callout or a client.
func (s *session) logNDRDropped() {
	t := s.tx
	rcpts := make([]string, 0, len(t.Recipients))
	for _, r := range t.Recipients {
		rcpts = append(rcpts, r.Addr)
	}
	s.log.Info("ndr dropped by the MTA before its content",
		zap.String("session", t.SessionID), zap.String("queue_id", t.QueueID),
		zap.String("stage", string(policy.StageInternal)), zap.Strings("rcpts", rcpts))
}
