package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"
)

//go:embed report.html.tmpl
var htmlTemplate string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"pct": percent,
	"day": func(t time.Time) string { return t.Format("2006-01-02") },
}).Parse(htmlTemplate))

// actionColors are fixed so every chart and legend agrees.
var actionColors = map[string]string{
	"accept": "#43a047", "tag": "#1e88e5", "quarantine": "#fb8c00",
	"reject": "#e53935", "discard": "#8e24aa", "tempfail": "#757575",
}

type htmlView struct {
	R         *Report
	Period    string
	Generated string
	Held      []heldRow
	Cards     []card
	Legend    []legendItem
	Volume    barChart
	Sources   hbarChart
	Mix       hbarChart
	Actions   []string
}

type heldRow struct {
	HeldMessage
	When, StatusText string
}

type card struct {
	Label string
	Value int
	Note  string
}

type legendItem struct{ Name, Color string }

// barChart is a stacked column chart, geometry precomputed in Go so the
// template only prints numbers.
type barChart struct {
	Title         string
	Width, Height float64
	Bars          []bar
	Grid          []gridLine
	Labels        []axisLabel
	Empty         bool
}

type bar struct {
	Title string
	Segs  []seg
}

type seg struct {
	X, Y, W, H float64
	Color      string
	Title      string
}

type gridLine struct {
	Y     float64
	Label string
	X2    float64
}

type axisLabel struct {
	X, Y float64
	Text string
}

// hbarChart is a horizontal bar chart: one row per key, up to two bars
// (total and part) per row.
type hbarChart struct {
	Title         string
	Width, Height float64
	Rows          []hrow
	Empty         bool
	Key1, Key2    string // legend of the two bars
}

type hrow struct {
	Label      string
	Y          float64
	TextY      float64
	W1, W2     float64
	V1, V2     int
	ValueX     float64
	BarX, BarH float64
}

const (
	chartW      = 920.0
	chartH      = 280.0
	padLeft     = 56.0
	padRight    = 10.0
	padTop      = 10.0
	padBottom   = 46.0
	maxBars     = 400
	hbarLabelW  = 300.0
	hbarRowH    = 22.0
	maxXLabels  = 12
	hourlyLimit = 7 * 24
)

// WriteHTML writes the review as one self-contained HTML page: inline CSS
// and inline SVG charts, no script and no external resource.
func (r *Report) WriteHTML(w io.Writer) error {
	v := htmlView{R: r, Period: r.periodText(), Generated: r.generatedText(), Actions: Actions}
	for _, h := range r.Quarantine.Messages {
		v.Held = append(v.Held, heldRow{h, r.timeText(h.Time), statusText(h)})
	}
	for _, a := range Actions {
		v.Legend = append(v.Legend, legendItem{a, actionColors[a]})
	}
	b, q := r.Backscatter, r.Quarantine
	v.Cards = []card{
		{"messages decided", r.Messages.Total, fmt.Sprintf("%d inbound, %d outbound", r.Messages.ByDirection["inbound"], r.Messages.ByDirection["outbound"])},
		{"backscatter messages blocked", b.BlockedMessages, fmt.Sprintf("%d rejected, %d quarantined, %d discarded at end of message", b.BlockedAtEOM["reject"], b.BlockedAtEOM["quarantine"], b.BlockedAtEOM["discard"])},
		{"backscatter recipients refused", b.RefusedRecipients, "at RCPT"},
		{"real bounces delivered", b.RealBouncesDelivered, "messages answering mail we sent"},
		{"NDRs suppressed", r.NDR.Suppressed, fmt.Sprintf("messages; %d success DSN stripped", r.NDR.SuccessDSNStripped)},
		{"held messages released", q.Released, fmt.Sprintf("false positives: %s of %d held", percent(q.FalsePositiveRate), q.Held)},
		{"observe: would block", r.Observe.WouldBlockMessages, fmt.Sprintf("backscatter messages; %d recipients at RCPT; %d NDRs would be suppressed", r.Observe.WouldRefuseRecipients, r.Observe.WouldSuppressNDR)},
		{"malformed lines", r.Input.Malformed, fmt.Sprintf("of %d lines read", r.Input.Lines)},
	}
	v.Volume = volumeChart(r)
	src, title := r.TopSources, "Top sources of blocked backscatter (client IP)"
	if len(src) == 0 && len(r.Observe.TopSources) > 0 {
		src, title = r.Observe.TopSources, "Observe mode: top sources of backscatter it would have blocked (client IP)"
	}
	if len(src) == 0 {
		src, title = r.TopClients, "Top client IPs (inbound, not plainly accepted)"
	}
	rows := make([]hrow, len(src))
	for i, c := range src {
		rows[i] = hrow{Label: c.Key, V1: c.Count}
	}
	v.Sources = hbars(title, rows, "transactions", "")
	// A new slice: the sources chart keeps its rows.
	mix := make([]hrow, 0, len(r.Evidence))
	for _, e := range r.Evidence {
		mix = append(mix, hrow{Label: e.Name, V1: e.Fired, V2: e.Decided})
	}
	v.Mix = hbars("Evidence mix: fired and decided", mix, "fired", "decided")
	return page.Execute(w, v)
}

// volumeChart picks hours for a span of up to a week, days beyond, fills
// the gaps with empty columns and keeps the last maxBars columns.
func volumeChart(r *Report) barChart {
	c := barChart{Title: "Decisions per day by action", Width: chartW, Height: chartH}
	series, hourly := r.Daily, false
	if len(r.Hourly) > 0 && len(r.Hourly) <= hourlyLimit &&
		r.Hourly[len(r.Hourly)-1].Start.Sub(r.Hourly[0].Start) < hourlyLimit*time.Hour {
		series, hourly = r.Hourly, true
		c.Title = "Decisions per hour by action"
	}
	series = fillGaps(series, hourly)
	if len(series) > maxBars {
		series = series[len(series)-maxBars:]
	}
	if len(series) == 0 {
		c.Empty = true
		return c
	}
	maxTotal := 0
	for _, b := range series {
		maxTotal = max(maxTotal, b.Total)
	}
	top := niceCeil(maxTotal)
	plotW, plotH := chartW-padLeft-padRight, chartH-padTop-padBottom
	slot := plotW / float64(len(series))
	gap := min(slot*0.15, 2)
	for i := 0; i <= 4; i++ {
		val := top * i / 4
		y := padTop + plotH - plotH*float64(val)/float64(top)
		c.Grid = append(c.Grid, gridLine{Y: y, Label: fmt.Sprint(val), X2: chartW - padRight})
	}
	layout := "2006-01-02"
	if hourly {
		layout = "2006-01-02 15:04"
	}
	every := (len(series) + maxXLabels - 1) / maxXLabels
	for i, b := range series {
		x := padLeft + float64(i)*slot
		y := padTop + plotH
		start := b.Start.Format(layout)
		br := bar{Title: fmt.Sprintf("%s: %d", start, b.Total)}
		for _, a := range Actions {
			n := b.ByAction[a]
			if n == 0 {
				continue
			}
			h := plotH * float64(n) / float64(top)
			y -= h
			br.Segs = append(br.Segs, seg{X: x + gap/2, Y: y, W: slot - gap, H: h, Color: actionColors[a],
				Title: fmt.Sprintf("%s %s: %d", start, a, n)})
		}
		c.Bars = append(c.Bars, br)
		if i%every == 0 {
			label := start
			if hourly {
				label = b.Start.Format("01-02 15h")
			}
			c.Labels = append(c.Labels, axisLabel{X: x + slot/2, Y: chartH - padBottom + 16, Text: label})
		}
	}
	return c
}

// fillGaps adds empty columns for the hours or days without decisions,
// stepping in the buckets' own zone (a day across a DST change is 23 or
// 25 hours).
func fillGaps(in []Bucket, hourly bool) []Bucket {
	if len(in) < 2 {
		return in
	}
	next := func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	if hourly {
		next = func(t time.Time) time.Time { return t.Add(time.Hour) }
	}
	first, last := in[0].Start, in[len(in)-1].Start
	if n := last.Sub(first) / time.Hour; !hourly && n/24 > 4*maxBars || hourly && n > 4*maxBars {
		return in
	}
	var out []Bucket
	i := 0
	for t := first; !t.After(last); t = next(t) {
		if i < len(in) && in[i].Start.Equal(t) {
			out = append(out, in[i])
			i++
		} else {
			out = append(out, Bucket{Start: t, ByAction: map[string]int{}})
		}
	}
	return out
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, and to a multiple
// of 4 so the four grid steps are whole numbers.
func niceCeil(n int) int {
	if n <= 4 {
		return 4
	}
	p := 1
	for p*10 < n {
		p *= 10
	}
	for _, m := range []int{1, 2, 5, 10} {
		if m*p >= n {
			v := m * p
			for v%4 != 0 {
				v++
			}
			return v
		}
	}
	return n
}

func hbars(title string, rows []hrow, key1, key2 string) hbarChart {
	c := hbarChart{Title: title, Width: chartW, Key1: key1, Key2: key2, Empty: len(rows) == 0}
	maxV := 1
	for _, r := range rows {
		maxV = max(maxV, r.V1, r.V2)
	}
	plotW := chartW - hbarLabelW - 110 // room for the value text ("4078 / 2723") after the longest bar
	for i := range rows {
		r := &rows[i]
		r.Y = float64(i)*hbarRowH + 4
		r.TextY = r.Y + hbarRowH*0.62
		r.BarX, r.BarH = hbarLabelW, hbarRowH-6
		r.W1 = plotW * float64(r.V1) / float64(maxV)
		r.W2 = plotW * float64(r.V2) / float64(maxV)
		r.ValueX = hbarLabelW + r.W1 + 6
		if rs := []rune(r.Label); len(rs) > 44 {
			r.Label = string(rs[:43]) + "…"
		}
	}
	c.Rows = rows
	c.Height = float64(len(rows))*hbarRowH + 8
	return c
}
