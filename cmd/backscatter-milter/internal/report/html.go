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
	"f1": func(v float64) string { return fmt.Sprintf("%.1f", v) },
}).Parse(htmlTemplate))

// actionColors are fixed so every chart and legend agrees.
var actionColors = map[string]string{
	"accept": "#43a047", "tag": "#1e88e5", "quarantine": "#fb8c00",
	"reject": "#e53935", "discard": "#8e24aa", "tempfail": "#757575",
}

type htmlView struct {
	R       *Report
	Period  string
	Cards   []card
	Legend  []legendItem
	Volume  barChart
	Sources hbarChart
	Mix     hbarChart
	Actions []string
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
	v := htmlView{R: r, Period: r.periodText(), Actions: Actions}
	for _, a := range Actions {
		v.Legend = append(v.Legend, legendItem{a, actionColors[a]})
	}
	v.Cards = []card{
		{"messages decided", r.Messages.Total, fmt.Sprintf("%d inbound, %d outbound", r.Messages.ByDirection["inbound"], r.Messages.ByDirection["outbound"])},
		{"backscatter blocked", r.Backscatter.Blocked, fmt.Sprintf("%d recipients at RCPT, %d messages at end of message", r.Backscatter.BlockedAtRcpt, r.Backscatter.Blocked-r.Backscatter.BlockedAtRcpt)},
		{"real bounces delivered", r.Backscatter.RealBouncesDelivered, "answers to mail we sent"},
		{"NDRs suppressed", r.NDR.Suppressed, fmt.Sprintf("%d success DSN stripped", r.NDR.SuccessDSNStripped)},
		{"observe: would reject", r.Observe.WouldMessages["reject"] + r.Observe.WouldRejectRcpt, fmt.Sprintf("%d would quarantine", r.Observe.WouldMessages["quarantine"])},
		{"malformed lines", r.Input.Malformed, fmt.Sprintf("of %d lines read", r.Input.Lines)},
	}
	v.Volume = volumeChart(r)
	src, title := r.TopSources, "Top sources of blocked backscatter (client IP)"
	if len(src) == 0 {
		src, title = r.TopClients, "Top client IPs (inbound, not plainly accepted)"
	}
	rows := make([]hrow, len(src))
	for i, c := range src {
		rows[i] = hrow{Label: c.Key, V1: c.Count}
	}
	v.Sources = hbars(title, rows, "verdicts", "")
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
	series, step, layout := r.Daily, 24*time.Hour, "2006-01-02"
	if len(r.Hourly) > 0 && len(r.Hourly) <= hourlyLimit {
		first, _ := time.Parse("2006-01-02T15", r.Hourly[0].Start)
		last, _ := time.Parse("2006-01-02T15", r.Hourly[len(r.Hourly)-1].Start)
		if last.Sub(first) < hourlyLimit*time.Hour {
			series, step, layout = r.Hourly, time.Hour, "2006-01-02T15"
			c.Title = "Decisions per hour by action"
		}
	}
	series = fillGaps(series, step, layout)
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
	every := (len(series) + maxXLabels - 1) / maxXLabels
	for i, b := range series {
		x := padLeft + float64(i)*slot
		y := padTop + plotH
		br := bar{Title: fmt.Sprintf("%s: %d", b.Start, b.Total)}
		for _, a := range Actions {
			n := b.ByAction[a]
			if n == 0 {
				continue
			}
			h := plotH * float64(n) / float64(top)
			y -= h
			br.Segs = append(br.Segs, seg{X: x + gap/2, Y: y, W: slot - gap, H: h, Color: actionColors[a],
				Title: fmt.Sprintf("%s %s: %d", b.Start, a, n)})
		}
		c.Bars = append(c.Bars, br)
		if i%every == 0 {
			label := b.Start
			if step == time.Hour {
				label = label[5:10] + " " + label[11:] + "h"
			}
			c.Labels = append(c.Labels, axisLabel{X: x + slot/2, Y: chartH - padBottom + 16, Text: label})
		}
	}
	return c
}

func fillGaps(in []Bucket, step time.Duration, layout string) []Bucket {
	if len(in) < 2 {
		return in
	}
	first, err1 := time.Parse(layout, in[0].Start)
	last, err2 := time.Parse(layout, in[len(in)-1].Start)
	if err1 != nil || err2 != nil || last.Sub(first)/step > 4*maxBars {
		return in
	}
	have := make(map[string]Bucket, len(in))
	for _, b := range in {
		have[b.Start] = b
	}
	var out []Bucket
	for t := first; !t.After(last); t = t.Add(step) {
		k := t.Format(layout)
		if b, ok := have[k]; ok {
			out = append(out, b)
		} else {
			out = append(out, Bucket{Start: k, ByAction: map[string]int{}})
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
