package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LocalZone returns the system's time zone loaded under its IANA name
// ("Europe/Berlin"), so a report names the zone its hours are cut in;
// time.Local (whose name is only "Local") when the name cannot be found.
func LocalZone() *time.Location {
	if name := localZoneName(); name != "" {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	return time.Local
}

// localZoneName finds the zone's name where the C library and Go look for
// the zone itself: $TZ, the /etc/localtime link, Debian's /etc/timezone.
func localZoneName() string {
	if tz, ok := os.LookupEnv("TZ"); ok {
		tz = strings.TrimPrefix(tz, ":")
		if tz == "" {
			return "UTC"
		}
		if !filepath.IsAbs(tz) {
			return tz
		}
		return afterZoneinfo(tz)
	}
	if target, err := filepath.EvalSymlinks("/etc/localtime"); err == nil {
		if name := afterZoneinfo(target); name != "" {
			return name
		}
	}
	if b, err := os.ReadFile("/etc/timezone"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

func afterZoneinfo(path string) string {
	if _, name, ok := strings.Cut(path, "/zoneinfo/"); ok {
		return name
	}
	return ""
}

// ZoneName names loc for a reader: its IANA name, or, for a zone known
// only as "Local", its abbreviation and offset from UTC now.
func ZoneName(loc *time.Location) string {
	if loc == nil {
		return "UTC"
	}
	n := loc.String()
	if filepath.IsAbs(n) { // time.Local read from TZ=/usr/share/zoneinfo/…
		n = afterZoneinfo(n)
	}
	if n != "Local" && n != "" {
		return n
	}
	abbr, off := time.Now().In(loc).Zone()
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	offset := fmt.Sprintf("UTC%c%02d:%02d", sign, off/3600, off%3600/60)
	if abbr == "" || strings.HasPrefix(abbr, "+") || strings.HasPrefix(abbr, "-") {
		return offset
	}
	return abbr + ", " + offset
}
