package report_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
)

func Example() {
	log := `{"level":"info","ts":"2026-03-03T10:00:00Z","msg":"verdict","session":"a1","queue_id":"","stage":"rcpt","action":"reject","would":"reject","mode":"enforce","score":10,"evidence":[{"name":"batv:missing","weight":10}],"direction":"inbound","client_ip":"198.51.100.23","client_name":"","helo":"mx.victim.example","sender":"<>","rcpts":["alice@example.org"],"reply":"550 5.7.1 rejected as backscatter","duration_ms":0.4}
{"level":"info","ts":"2026-03-03T10:05:00Z","msg":"verdict","session":"a2","queue_id":"4AB12","stage":"eom","action":"accept","would":"accept","mode":"enforce","score":-10,"evidence":[{"name":"bounce:ours","weight":-10}],"direction":"inbound","client_ip":"198.51.100.7","client_name":"","helo":"mx.example.net","sender":"<>","rcpts":["alice@example.org"],"duration_ms":2.1}
{"level":"info","ts":"2026-03-03T10:06:00Z","msg":"verdict","session":"a3","stage":"eom","action":"acc
`
	a := report.New(report.Options{Location: time.UTC})
	a.Read(strings.NewReader(log))
	r := a.Report()
	fmt.Println("recipients refused:", r.Backscatter.RefusedRecipients, "messages blocked:", r.Backscatter.BlockedMessages,
		"real bounces delivered:", r.Backscatter.RealBouncesDelivered,
		"malformed lines:", r.Input.Malformed)
	fmt.Println("top target:", r.TopTargets[0].Key)
	// Output:
	// recipients refused: 1 messages blocked: 0 real bounces delivered: 1 malformed lines: 1
	// top target: alice@example.org
}
