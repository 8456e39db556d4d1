package config

// syslogFacilities are the facilities log.syslog accepts, by their
// numbers in RFC 5424 6.2.1 (what syslog(3) calls LOG_MAIL >> 3 etc.).
var syslogFacilities = map[string]int{
	"user": 1, "mail": 2, "daemon": 3,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// SyslogFacility returns the number of a log.syslog facility name.
func SyslogFacility(name string) (int, bool) {
	n, ok := syslogFacilities[name]
	return n, ok
}
