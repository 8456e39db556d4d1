//go:build !linux

package milter

import "net"

// quickAckListener passes connections through unchanged: TCP_QUICKACK is
// Linux-only. Elsewhere the MTA's macro packets can wait for a delayed ACK
// on an inet socket (see quickack_linux.go); a unix socket does not.
type quickAckListener struct{ net.Listener }
