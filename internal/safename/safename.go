// Package safename maps a chat id to a name that is safe as one path
// element: the chat's log file and its agent's working directory.
package safename

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

const (
	// maxPlainLen is the longest chat id used as a file name unchanged.
	maxPlainLen = 100
	// maxPrefixLen bounds the readable part of a hashed name.
	maxPrefixLen = 64
	// hashBytes is how much of the SHA-256 of the raw id a hashed name
	// carries: 80 bits, so a collision among even millions of chats is
	// not a practical concern.
	hashBytes = 10
)

// Of maps a chat id to a file name (without extension) that is safe to
// join to a directory: it has only the characters [A-Za-z0-9_+-], never
// starts with '.' or '-', is never empty, "." or "..", and is at most 85
// bytes long.
//
// Plain ids (up to 100 bytes of [A-Za-z0-9+-], not starting with '-') are
// kept as they are, so "alice" and "+15551234567" stay readable. Every other
// id becomes a sanitized readable prefix, an '_' and a hash of the raw id,
// e.g. "signal:+1555" -> "signal_+1555_<20 hex digits>". Plain names never
// contain '_' and hashed names always do, so the mapping is injective (up to
// the 80-bit hash).
//
// Names never contain '.', which also keeps timberjack from mistaking one
// chat's log file for a rotated backup of another: backup names carry a
// timestamp with a '.' before the milliseconds.
func Of(chat string) string {
	if isPlain(chat) {
		return chat
	}
	var b strings.Builder
	last := byte(0)
	for _, r := range chat {
		if b.Len() >= maxPrefixLen {
			break
		}
		c := byte('_')
		if r < 0x80 && isSafe(byte(r)) && !(b.Len() == 0 && r == '-') {
			c = byte(r)
		}
		if c == '_' && last == '_' {
			continue // collapse runs of replaced characters
		}
		b.WriteByte(c)
		last = c
	}
	if last != '_' {
		b.WriteByte('_')
	}
	sum := sha256.Sum256([]byte(chat))
	b.WriteString(hex.EncodeToString(sum[:hashBytes]))
	return b.String()
}

// isPlain reports whether chat can be used as a file name unchanged.
func isPlain(chat string) bool {
	if chat == "" || len(chat) > maxPlainLen || chat[0] == '-' {
		return false
	}
	for i := 0; i < len(chat); i++ {
		if !isSafe(chat[i]) {
			return false
		}
	}
	return true
}

// isSafe reports whether c may appear in a plain name. '_' is deliberately
// excluded: it marks hashed names.
func isSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '+' || c == '-'
}
