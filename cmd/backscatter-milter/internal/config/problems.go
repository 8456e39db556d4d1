package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileError is a configuration file that could not be used at all: it
// cannot be read, or it is not YAML. It names the file once, and the line
// when the YAML parser gave one.
type FileError struct {
	Path string
	Line int // 0: unknown
	Msg  string
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// readConfigFile reads and parses a configuration file, so that a read or
// YAML error is reported once, in the file's own terms.
func readConfigFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, by FileError
		}
		return nil, &FileError{Path: path, Msg: "cannot read: " + err.Error()}
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(path, err)
	}
	if doc != nil {
		if _, ok := doc.(map[string]any); !ok {
			return nil, &FileError{Path: path, Msg: "not valid YAML for a configuration: want keys such as \"mode: observe\" at the top level"}
		}
	}
	return data, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns "yaml: line 3: mapping values are not allowed" into a
// FileError for line 3.
func yamlError(path string, err error) *FileError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &FileError{Path: path, Line: n, Msg: "not valid YAML: " + m[2]}
	}
	return &FileError{Path: path, Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// withoutCascades drops the validation problems of keys whose value could
// not even be decoded: "dnsbl.timeout: soon is not a duration" is the
// error, "dnsbl.timeout: must be a positive duration" only its echo.
func withoutCascades(validated, decoded Problems) Problems {
	if len(decoded) == 0 {
		return validated
	}
	bad := map[string]bool{}
	for _, p := range decoded {
		bad[p.Key] = true
	}
	var out Problems
	for _, p := range validated {
		if !bad[p.Key] {
			out = append(out, p)
		}
	}
	return out
}

// suggestKey returns the known key closest to an unknown one, when it is
// close enough to be a typo ("treshold" → "thresholds"), else "".
func suggestKey(unknown string, known []string) string {
	best, bestD := "", 0
	u := strings.ToLower(unknown)
	for _, k := range known {
		d := editDistance(u, k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	// Up to a third of the word may be wrong, and never a whole short word.
	limit := max(1, len(u)/3)
	if best == "" || bestD > limit || bestD >= len(u) {
		return ""
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment): a swap of two letters costs one, as typos do.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
