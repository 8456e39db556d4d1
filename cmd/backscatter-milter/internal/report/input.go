package report

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxLineBytes is the longest line read whole; a longer one is counted as
// malformed and skipped, so one runaway line cannot exhaust memory.
const MaxLineBytes = 1 << 20

// Read counts every line of r. Gzip input is recognised by its magic
// bytes. A read error (a truncated .gz, say) ends this input, is noted in
// the report and returned; what was read before it stays counted.
func (a *Aggregator) Read(r io.Reader) error {
	err := EachLine(r, func(line []byte) {
		if line == nil {
			a.r.Input.Lines++
			a.r.Input.Malformed++
			return
		}
		a.AddLine(line)
	})
	if err != nil {
		return a.noteErr(err)
	}
	return nil
}

// EachLine calls fn with every line of r, plain or gzip (recognised by its
// magic bytes). A line longer than MaxLineBytes, or one a read error cut
// short, comes as nil, so one runaway line cannot exhaust memory. The line
// is only valid during the call.
func EachLine(r io.Reader, fn func(line []byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	var long []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !tooLong {
				if len(long)+len(chunk) > MaxLineBytes {
					tooLong, long = true, long[:0]
				} else {
					long = append(long, chunk...)
				}
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			if len(chunk)+len(long) > 0 || tooLong {
				fn(nil) // the line the error cut short
			}
			return err
		}
		line := chunk
		if len(long) > 0 || tooLong {
			if !tooLong && len(long)+len(chunk) <= MaxLineBytes {
				line = append(long, chunk...)
			} else {
				tooLong = true
			}
		}
		switch {
		case tooLong:
			fn(nil)
		case len(line) > 0:
			fn(line)
		}
		long, tooLong = long[:0], false
		if err != nil { // io.EOF
			return nil
		}
	}
}

func (a *Aggregator) noteErr(err error) error {
	if len(a.r.Input.Errors) < maxErrors {
		a.r.Input.Errors = append(a.r.Input.Errors, err.Error())
	}
	return err
}

// Expand turns command-line arguments into inputs: file names, glob
// patterns (each must match something) and "-" for standard input.
func Expand(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" || !strings.ContainsAny(a, "*?[") {
			out = append(out, a)
			continue
		}
		m, err := filepath.Glob(a)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", a, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%q matches no file", a)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

// Rotated returns the log file at path and its rotated siblings, oldest
// first, the way logrotate names them: path.N and path.N.gz (a higher N is
// older), or with dateext path-YYYYMMDD[HH] and .gz (a later date is
// newer). path itself comes last and need not exist while siblings do.
func Rotated(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type sibling struct {
		name string
		num  int    // .N suffix, 0 when dated
		date string // -YYYYMMDD suffix
	}
	var sibs []sibling
	found := false
	for _, e := range ents {
		name := e.Name()
		if name == base {
			found = true
			continue
		}
		rest, ok := strings.CutPrefix(name, base)
		if !ok || e.IsDir() {
			continue
		}
		rest = strings.TrimSuffix(rest, ".gz")
		switch {
		case len(rest) > 1 && rest[0] == '.' && allDigits(rest[1:]):
			n, err := strconv.Atoi(rest[1:])
			if err == nil && n > 0 {
				sibs = append(sibs, sibling{name: name, num: n})
			}
		case len(rest) > 8 && rest[0] == '-' && allDigits(rest[1:]):
			sibs = append(sibs, sibling{name: name, date: rest[1:]})
		}
	}
	if !found && len(sibs) == 0 {
		return nil, fmt.Errorf("%s: %w", path, os.ErrNotExist)
	}
	sort.Slice(sibs, func(i, j int) bool {
		x, y := sibs[i], sibs[j]
		if (x.date == "") != (y.date == "") {
			return x.date != "" // dated files come from an older rotation scheme
		}
		if x.date != "" {
			return x.date < y.date
		}
		if x.num != y.num {
			return x.num > y.num
		}
		return x.name < y.name
	})
	out := make([]string, 0, len(sibs)+1)
	for _, s := range sibs {
		out = append(out, filepath.Join(dir, s.name))
	}
	if found {
		out = append(out, path)
	}
	return out, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// ReadFiles reads each input in turn ("-" is stdin). A file that cannot be
// opened is an error returned at once, before anything is read, so a typo
// never yields a silently partial report; a read error inside a file is
// noted in the report and reading goes on with the next file.
func (a *Aggregator) ReadFiles(names []string, stdin io.Reader) error {
	files := make([]*os.File, len(names))
	for i, n := range names {
		if n == "-" {
			continue
		}
		f, err := os.Open(n)
		if err == nil {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil && st.IsDir() {
				err = fmt.Errorf("%s is a directory", n)
			}
		}
		if err != nil {
			for _, g := range files {
				if g != nil {
					g.Close()
				}
			}
			if f != nil {
				f.Close()
			}
			return err
		}
		files[i] = f
	}
	for i, n := range names {
		a.r.Input.Files++
		a.r.Input.FileNames = append(a.r.Input.FileNames, n)
		var r io.Reader = stdin
		if files[i] != nil {
			r = files[i]
		}
		if err := a.Read(r); err != nil && len(a.r.Input.Errors) > 0 {
			a.r.Input.Errors[len(a.r.Input.Errors)-1] = n + ": " + a.r.Input.Errors[len(a.r.Input.Errors)-1]
		}
		if files[i] != nil {
			files[i].Close()
		}
	}
	return nil
}

// ParseTime reads a --since or --until value: RFC 3339, "2006-01-02 15:04"
// (or with a T), "2006-01-02" (midnight) in loc, or an age such as "90m",
// "24h" or "7d" before now.
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if loc == nil {
		loc = time.UTC
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 && days < 100000 {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want 2006-01-02, \"2006-01-02 15:04\", RFC 3339, or an age like 24h or 7d", s)
}
