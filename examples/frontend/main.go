// Command frontend is a minimal chat front-end for dispatch: it shows the
// two ways replies come back to the person, and does nothing a real bridge
// would not (a bridge would send each reply on to Telegram, Signal, …
// where this prints it).
//
// Follow the event feed (long poll; the daemon answers the moment a reply
// is committed), over the control socket or the TCP API:
//
//	frontend -socket ~/.local/state/dispatch/dispatch.sock -cursor ~/.local/state/frontend.cursor
//	frontend -url http://127.0.0.1:8787 -token-file ~/.config/dispatch/token
//
// Or receive webhooks and verify their Standard Webhooks signature:
//
//	frontend -listen 127.0.0.1:9000 -secret whsec_…
//
// Either way it handles each event once: the feed by its position (saved
// in -cursor, so a restart resumes where it stopped), webhooks by their
// webhook-id (a delivery can come twice, e.g. after the daemon was killed
// mid-delivery). One reply event answers a whole turn, however many
// messages were in it, so a person never gets the same answer twice.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one entry of dispatch's event feed.
type Event struct {
	ID         string    `json:"id"`
	Seq        int64     `json:"seq"`
	Type       string    `json:"type"`
	At         time.Time `json:"at"`
	ChatID     string    `json:"chat_id"`
	TurnID     string    `json:"turn_id"`
	MessageIDs []string  `json:"message_ids"`
	Text       string    `json:"text"`
	MessageID  string    `json:"message_id"`
	Error      string    `json:"error"`
	Reason     string    `json:"reason"`
	RequestID  string    `json:"request_id"`
	Tool       string    `json:"tool"`
	Summary    string    `json:"summary"`
	Decision   string    `json:"decision"`
	By         string    `json:"by"`
}

// deliver is where a bridge would send the event on to the person.
func deliver(out io.Writer, ev Event) {
	switch ev.Type {
	case "reply":
		fmt.Fprintf(out, "to %s: %s\n", ev.ChatID, ev.Text)
	case "dead_letter":
		fmt.Fprintf(out, "to %s: (your message could not be answered: %s)\n", ev.ChatID, ev.Error)
	case "session_reset":
		fmt.Fprintf(out, "to %s: (the assistant had to start a new conversation and lost the earlier context)\n", ev.ChatID)
	case "permission_request":
		// A bridge would show buttons; answering is POST
		// /v1/permissions/{request_id} {"decision": "allow"|"allow_always"|"deny"}.
		fmt.Fprintf(out, "to %s: (the assistant asks to run %s: %s; request %s)\n", ev.ChatID, ev.Tool, ev.Summary, ev.RequestID)
	case "permission_decided":
		fmt.Fprintf(out, "to %s: (%s: %s by %s)\n", ev.ChatID, ev.Tool, ev.Decision, ev.By)
	default:
		fmt.Fprintf(out, "[%s] %s %s\n", ev.Type, ev.ChatID, ev.Reason)
	}
}

func main() {
	var (
		socket    = flag.String("socket", "", "follow the feed over this control socket")
		baseURL   = flag.String("url", "", "follow the feed over the TCP API at this URL (with -token-file)")
		tokenFile = flag.String("token-file", "", "bearer token for -url")
		cursor    = flag.String("cursor", "", "file keeping the feed position across restarts")
		listen    = flag.String("listen", "", "receive webhooks on this address instead")
		secret    = flag.String("secret", os.Getenv("DISPATCH_WEBHOOK_SECRET"), "the webhook's whsec_… secret")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch {
	case *listen != "":
		err = serveWebhooks(ctx, *listen, *secret, os.Stdout)
	case *socket != "" || *baseURL != "":
		f := &Follower{Cursor: *cursor, Out: os.Stdout, Base: *baseURL}
		if *socket != "" {
			f.Base = "http://dispatch"
			f.Client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", *socket)
			}}}
		}
		if *tokenFile != "" {
			b, rerr := os.ReadFile(*tokenFile)
			if rerr != nil {
				log.Fatal(rerr)
			}
			f.Token = strings.TrimSpace(string(b))
		}
		err = f.Run(ctx)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// Follower reads the feed with long polls and handles each event once.
type Follower struct {
	Base   string // http://host:port, or http://dispatch over a socket
	Client *http.Client
	Token  string
	Cursor string // file holding the last handled seq ("" keeps it in memory)
	Out    io.Writer
	after  int64
	loaded bool
}

// Run follows the feed until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	if !f.loaded && f.Cursor != "" {
		if b, err := os.ReadFile(f.Cursor); err == nil {
			f.after, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		}
		f.loaded = true
	}
	for ctx.Err() == nil {
		if err := f.poll(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Printf("feed: %v; retrying in 2s", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
	return ctx.Err()
}

// poll makes one long poll and handles what it brings.
func (f *Follower) poll(ctx context.Context) error {
	url := fmt.Sprintf("%s/v1/events?after=%d&wait=60s&types=reply,dead_letter,session_reset", f.Base, f.after)
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, "GET", url, nil)
	if err != nil {
		return err
	}
	if f.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.Token)
	}
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusGone {
		// We were away longer than the daemon keeps events: say so and
		// go on from the oldest kept one.
		var g struct {
			Oldest int64 `json:"oldest"`
		}
		_ = json.Unmarshal(body, &g)
		log.Printf("feed: events before %d were purged while we were away; some replies were missed", g.Oldest)
		return f.save(g.Oldest - 1)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var page struct {
		Events []Event `json:"events"`
		Next   int64   `json:"next"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return err
	}
	for _, ev := range page.Events {
		if ev.Seq <= f.after {
			continue // seen: a seq never comes back below the cursor
		}
		deliver(f.Out, ev)
		if err := f.save(ev.Seq); err != nil {
			return err
		}
	}
	return f.save(max(page.Next, f.after))
}

func (f *Follower) save(seq int64) error {
	f.after = seq
	if f.Cursor == "" {
		return nil
	}
	tmp := f.Cursor + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(seq, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.Cursor)
}

// WebhookHandler verifies and handles webhook deliveries: a valid
// signature within five minutes of now, each webhook-id once.
type WebhookHandler struct {
	Key []byte
	Out io.Writer
	// Log gets a line for every refused delivery (default: the standard
	// logger), so that a wrong secret is not silent.
	Log *log.Logger

	mu   sync.Mutex
	seen map[string]time.Time
}

// NewWebhookHandler takes the endpoint's "whsec_<base64>" secret.
func NewWebhookHandler(secret string, out io.Writer) (*WebhookHandler, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return nil, errors.New(`the secret must be "whsec_" followed by base64`)
	}
	return &WebhookHandler{Key: key, Out: out, seen: map[string]time.Time{}}, nil
}

func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if err := verify(h.Key, id, ts, sigs, body, time.Now()); err != nil {
		// 4xx: dispatch gives up on this delivery at once (and lists it
		// as failed) rather than retrying a forgery.
		lg := h.Log
		if lg == nil {
			lg = log.Default()
		}
		lg.Printf("refused delivery %q from %s with 401: %v (is -secret the endpoint's secret in dispatch's config? after fixing it: dispatch webhooks retry ENDPOINT)",
			id, r.RemoteAddr, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	_, dup := h.seen[id]
	if !dup {
		h.seen[id] = time.Now()
		for k, t := range h.seen { // remember ids for a day
			if time.Since(t) > 24*time.Hour {
				delete(h.seen, k)
			}
		}
	}
	h.mu.Unlock()
	if !dup {
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		deliver(h.Out, ev)
	}
	w.WriteHeader(http.StatusNoContent) // 2xx: delivered (a duplicate too)
}

// verify checks a Standard Webhooks signature: base64 HMAC-SHA256 of
// "id.timestamp.body", compared in constant time, among the
// space-separated "v1,<sig>" values, with the timestamp near now.
func verify(key []byte, id, ts, sigs string, body []byte, now time.Time) error {
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad webhook-timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("webhook-timestamp too far from now")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

func serveWebhooks(ctx context.Context, addr, secret string, out io.Writer) error {
	h, err := NewWebhookHandler(secret, out)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	log.Printf("receiving webhooks on %s", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
