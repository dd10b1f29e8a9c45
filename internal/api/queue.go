package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Queue listing limits. A page holds at most MaxQueuePage messages (the
// default is DefaultQueuePage), each text, reply and error clipped to
// ListClip characters: one page costs a bounded amount of memory however
// large the messages are, and a client that reads slowly holds no more
// than that. GET /v1/queue/{id} gives one message in full.
const (
	DefaultQueuePage = 100
	MaxQueuePage     = wire.MaxQueuePage
	ListClip         = 200
)

// ListedOut and QueuePage are the wire package's listing shapes.
type (
	ListedOut = wire.ListedOut
	QueuePage = wire.QueuePage
)

// queue serves GET /v1/queue?chat=C&state=S&after=CURSOR&limit=N.
func (h *handler) queue(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.Filter{ChatID: q.Get("chat"), State: store.State(q.Get("state"))}
	switch f.State {
	case "", store.Pending, store.Inflight, store.Done, store.Dead:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state %q is not one of pending, inflight, done, dead", f.State))
		return
	}
	limit := DefaultQueuePage
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxQueuePage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d; page with after= for more", MaxQueuePage))
			return
		}
		limit = n
	}
	var after int64
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after must be the next cursor of an earlier page")
			return
		}
		after = n
	}
	page, more, err := h.b.MessagePage(r.Context(), f, after, limit, ListClip)
	if err != nil {
		h.fail(w, "list queue", err)
		return
	}
	// Streamed one message at a time: nothing but the page itself is
	// held, never its whole encoding.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"messages":[`))
	enc := json.NewEncoder(w)
	for i, m := range page {
		if i > 0 {
			_, _ = w.Write([]byte(","))
		}
		if err := enc.Encode(listedOut(m)); err != nil {
			return // the client went away
		}
	}
	next := ""
	if more && len(page) > 0 {
		next = strconv.FormatInt(page[len(page)-1].Seq, 10)
	}
	tail, _ := json.Marshal(next)
	_, _ = fmt.Fprintf(w, `],"next":%s}`+"\n", tail)
}

func listedOut(m store.Listed) ListedOut {
	return ListedOut{
		MessageOut: Out(m.Message, true),
		Truncated:  m.Clipped(),
		TextBytes:  m.TextBytes, ReplyBytes: m.ReplyBytes, ErrorBytes: m.ErrorBytes,
	}
}

// queueMessage serves GET /v1/queue/{id}: one message in full, text,
// reply and error included.
func (h *handler) queueMessage(w http.ResponseWriter, r *http.Request) {
	m, err := h.b.Message(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, "get message", err)
		return
	}
	writeJSON(w, http.StatusOK, Out(m, true))
}
