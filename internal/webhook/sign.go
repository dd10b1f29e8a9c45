// Package webhook delivers the event feed to HTTP endpoints, signed per the
// Standard Webhooks 1.0 scheme (https://www.standardwebhooks.com/).
//
// Every event an endpoint subscribes to is queued for it in the commit that
// writes the event (the store's webhook outbox), so delivery state is
// durable: after a crash every undelivered event is sent again, with the
// same webhook-id. Per endpoint and chat, events go out in order — a chat's
// next event waits until the previous one is delivered or given up — while
// different chats go out in parallel, bounded. A 2xx answer is delivery; a
// connection error, a timeout, 408, 429 (honouring Retry-After) or 5xx is
// retried with jittered, doubling delay for up to the endpoint's retry_for;
// any other answer is a permanent refusal and gives up at once. A delivery
// that gave up is kept as failed until an operator retries it.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every Standard Webhooks secret.
const SecretPrefix = "whsec_"

// Header names of the Standard Webhooks scheme.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ParseSecret decodes a "whsec_<base64>" secret into the HMAC key.
func ParseSecret(s string) ([]byte, error) {
	if !strings.HasPrefix(s, SecretPrefix) {
		return nil, errors.New(`must start with "whsec_" followed by base64`)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil {
		return nil, errors.New(`is not "whsec_" followed by valid base64`)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("holds a %d-byte key; use at least 16 bytes (24 to 64 recommended)", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature header value for a message: "v1,"
// and the base64 HMAC-SHA256, under key, of "id.timestamp.body" (the
// timestamp in Unix seconds).
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a received message the way a receiver should: one of the
// space-separated signatures matches (compared in constant time), and the
// timestamp is within tolerance of now (replay protection).
func Verify(key []byte, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	if id == "" || timestamp == "" || signatures == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not a number")
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp is %s away from now", d.Round(time.Second))
	}
	want := []byte(Sign(key, id, ts, body))
	for _, s := range strings.Fields(signatures) {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}
