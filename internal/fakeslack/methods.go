package fakeslack

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// params are a call's parameters, whatever the encoding; JSON values that
// are not strings are kept as JSON text, as the form encodings carry them.
type params map[string]string

func readParams(r *http.Request) (params, *apiError) {
	p := params{}
	for k, v := range r.URL.Query() {
		p[k] = v[0]
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	switch ct {
	case "application/json":
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, fail("invalid_json")
		}
		if len(strings.TrimSpace(string(raw))) == 0 {
			break
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fail("invalid_json")
		}
		for k, v := range m {
			var s string
			if json.Unmarshal(v, &s) == nil {
				p[k] = s
			} else {
				p[k] = string(v)
			}
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(maxBody); err != nil {
			return nil, fail("invalid_form_data")
		}
		for k, v := range r.MultipartForm.Value {
			p[k] = v[0]
		}
	case "application/x-www-form-urlencoded":
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, fail("invalid_form_data")
		}
		vals, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, fail("invalid_form_data")
		}
		for k, v := range vals {
			p[k] = v[0]
		}
	}
	return p, nil
}

type tokenKind int

const (
	tokenBot tokenKind = iota
	tokenApp
)

type method struct {
	token tokenKind
	h     func(p params) (map[string]any, *apiError)
}

func (s *Server) methods() map[string]method {
	return map[string]method{
		"api.test":                     {tokenBot, func(p params) (map[string]any, *apiError) { return map[string]any{}, nil }},
		"auth.test":                    {tokenBot, s.authTest},
		"apps.connections.open":        {tokenApp, s.connectionsOpen},
		"chat.postMessage":             {tokenBot, s.postMessage},
		"chat.update":                  {tokenBot, s.update},
		"chat.postEphemeral":           {tokenBot, s.postEphemeral},
		"reactions.add":                {tokenBot, s.reactionsAdd},
		"reactions.remove":             {tokenBot, s.reactionsRemove},
		"files.info":                   {tokenBot, s.filesInfo},
		"files.getUploadURLExternal":   {tokenBot, s.getUploadURL},
		"files.completeUploadExternal": {tokenBot, s.completeUpload},
		"conversations.info":           {tokenBot, s.conversationsInfo},
		"users.info":                   {tokenBot, s.usersInfo},
	}
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, name string) {
	p, perr := readParams(r)
	if perr != nil {
		s.record(name, nil, http.StatusOK, perr.code)
		writeAPIError(w, perr)
		return
	}
	token := p["token"]
	if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = h
	}
	m, ok := s.methods()[name]
	var e *apiError
	switch {
	case !ok:
		e = &apiError{status: http.StatusNotFound, code: "unknown_method"}
	case token == "":
		e = fail("not_authed")
	case token != s.botToken && token != s.appToken:
		e = fail("invalid_auth")
	case (m.token == tokenApp) != (token == s.appToken):
		e = fail("not_allowed_token_type")
	}
	if e == nil {
		e = s.injected(name)
	}
	var result map[string]any
	if e == nil {
		result, e = m.h(p)
	}
	if e != nil {
		s.record(name, p, e.status, e.code)
		writeAPIError(w, e)
		return
	}
	s.record(name, p, http.StatusOK, "")
	result["ok"] = true
	writeJSON(w, http.StatusOK, result)
}

func (s *Server) authTest(params) (map[string]any, *apiError) {
	return map[string]any{
		"url": "https://fake.slack.com/", "team": s.teamName, "user": s.botName,
		"team_id": s.teamID, "user_id": DefaultBotUser, "bot_id": DefaultBotID, "is_enterprise_install": false,
	}, nil
}

func (s *Server) conversationsInfo(p params) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[p["channel"]]
	if c == nil {
		return nil, fail("channel_not_found")
	}
	info := map[string]any{
		"id": c.info.ID, "created": 1700000000, "is_im": c.info.IsIM, "is_channel": !c.info.IsIM,
		"is_private": false, "is_member": true, "is_archived": false,
	}
	if c.info.IsIM {
		info["user"] = c.info.User
	} else {
		info["name"] = c.info.Name
		info["name_normalized"] = c.info.Name
	}
	return map[string]any{"channel": info}, nil
}

func (s *Server) usersInfo(p params) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[p["user"]]
	if u == nil {
		return nil, fail("user_not_found")
	}
	return map[string]any{"user": map[string]any{
		"id": u.ID, "team_id": s.teamID, "name": u.Name, "real_name": u.RealName, "is_bot": u.IsBot, "deleted": false,
		"profile": map[string]any{"real_name": u.RealName, "display_name": u.Name, "bot_id": u.BotID},
	}}, nil
}

// messageJSON is a message as the Web API and events show it.
func (s *Server) messageJSON(m *Message) map[string]any {
	out := map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "user": m.User, "team": s.teamID}
	if m.BotID != "" {
		out["bot_id"] = m.BotID
		out["app_id"] = DefaultAppID
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if len(m.Blocks) > 0 {
		out["blocks"] = m.Blocks
	}
	return out
}

// checkBlocks validates a blocks parameter as Slack does for the block
// kinds dispatch sends (section, context, actions with buttons, divider,
// header, rich_text) and returns it compacted.
func checkBlocks(raw string) (json.RawMessage, *apiError) {
	var blocks []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil {
		return nil, fail("invalid_blocks_format")
	}
	if len(blocks) > MaxBlocks {
		return nil, fail("invalid_blocks", fmt.Sprintf("[ERROR] no more than %d items allowed [json-pointer:/blocks]", MaxBlocks))
	}
	bad := func(i int, msg string) *apiError {
		return fail("invalid_blocks", fmt.Sprintf("[ERROR] %s [json-pointer:/blocks/%d]", msg, i))
	}
	for i, b := range blocks {
		var typ string
		json.Unmarshal(b["type"], &typ)
		switch typ {
		case "section":
			var t struct{ Text *textObject }
			json.Unmarshal(mustJSON(b), &t)
			if t.Text == nil || t.Text.Text == "" {
				if _, ok := b["fields"]; !ok {
					return nil, bad(i, "must provide a text or fields")
				}
			} else if n := utf8.RuneCountInString(t.Text.Text); n > MaxSectionTextLen {
				return nil, bad(i, fmt.Sprintf("must be less than %d characters [json-pointer:/blocks/%d/text/text]", MaxSectionTextLen+1, i))
			}
		case "actions":
			var a struct {
				Elements []struct {
					Type     string      `json:"type"`
					ActionID string      `json:"action_id"`
					Value    string      `json:"value"`
					Text     *textObject `json:"text"`
				} `json:"elements"`
			}
			json.Unmarshal(mustJSON(b), &a)
			if len(a.Elements) == 0 || len(a.Elements) > 25 {
				return nil, bad(i, "must provide 1 to 25 elements")
			}
			seen := map[string]bool{}
			for j, el := range a.Elements {
				switch {
				case el.Type == "button" && (el.Text == nil || el.Text.Text == "" || utf8.RuneCountInString(el.Text.Text) > MaxButtonTextLen):
					return nil, bad(i, fmt.Sprintf("button %d: text must be 1-%d characters", j, MaxButtonTextLen))
				case len(el.ActionID) > MaxActionIDLen:
					return nil, bad(i, fmt.Sprintf("element %d: action_id must be less than %d characters", j, MaxActionIDLen+1))
				case len(el.Value) > MaxButtonValueLen:
					return nil, bad(i, fmt.Sprintf("element %d: value must be less than %d characters", j, MaxButtonValueLen+1))
				case el.ActionID != "" && seen[el.ActionID]:
					return nil, bad(i, "action_id values must be unique")
				}
				seen[el.ActionID] = true
			}
		case "context", "divider", "header", "rich_text", "image", "markdown":
		default:
			return nil, bad(i, fmt.Sprintf("unsupported type %q", typ))
		}
	}
	out, _ := json.Marshal(blocks)
	return out, nil
}

type textObject struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (s *Server) postMessage(p params) (map[string]any, *apiError) {
	var blocks json.RawMessage
	if raw := p["blocks"]; raw != "" {
		var e *apiError
		if blocks, e = checkBlocks(raw); e != nil {
			return nil, e
		}
	}
	if p["text"] == "" && blocks == nil {
		return nil, fail("no_text")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channelLocked(p["channel"])
	if c == nil {
		return nil, fail("channel_not_found")
	}
	m := &Message{User: DefaultBotUser, BotID: DefaultBotID, Text: p["text"], Blocks: blocks}
	if r := []rune(m.Text); len(r) > MaxTextLen {
		m.Text, m.Truncated = string(r[:MaxTextLen]), true
	}
	if v, ok := p["mrkdwn"]; ok {
		b := v != "false" && v != "0"
		m.Mrkdwn = &b
	}
	if t := p["thread_ts"]; t != "" {
		parent := c.find(t)
		if parent == nil {
			return nil, fail("thread_not_found")
		}
		if parent.ThreadTS != "" {
			t = parent.ThreadTS // a reply to a reply goes to the thread
		}
		m.ThreadTS = t
	}
	m.TS = s.nextTSLocked()
	c.msgs = append(c.msgs, m)
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "chat.postMessage", TS: m.TS, ThreadTS: m.ThreadTS, Text: m.Text})
	s.echoLocked(c, m)
	s.notifyLocked()
	return map[string]any{"channel": c.info.ID, "ts": m.TS, "message": s.messageJSON(m)}, nil
}

func (s *Server) update(p params) (map[string]any, *apiError) {
	var blocks json.RawMessage
	_, hasBlocks := p["blocks"]
	if raw := p["blocks"]; raw != "" {
		var e *apiError
		if blocks, e = checkBlocks(raw); e != nil {
			return nil, e
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[p["channel"]]
	if c == nil {
		return nil, fail("channel_not_found")
	}
	m := c.find(p["ts"])
	if m == nil {
		return nil, fail("message_not_found")
	}
	if m.BotID != DefaultBotID {
		return nil, fail("cant_update_message")
	}
	text, hasText := p["text"]
	if !hasText && !hasBlocks {
		return nil, fail("no_text")
	}
	if hasText {
		if r := []rune(text); len(r) > MaxTextLen {
			return nil, fail("msg_too_long")
		}
		m.Edits = append(m.Edits, m.Text)
		m.Text = text
	}
	if hasBlocks { // without blocks the message keeps its blocks; [] removes them
		m.Blocks = blocks
		if string(blocks) == "[]" {
			m.Blocks = nil
		}
	}
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "chat.update", TS: m.TS, ThreadTS: m.ThreadTS, Text: m.Text})
	s.notifyLocked()
	return map[string]any{"channel": c.info.ID, "ts": m.TS, "text": m.Text, "message": s.messageJSON(m)}, nil
}

func (s *Server) postEphemeral(p params) (map[string]any, *apiError) {
	var blocks json.RawMessage
	if raw := p["blocks"]; raw != "" {
		var e *apiError
		if blocks, e = checkBlocks(raw); e != nil {
			return nil, e
		}
	}
	if p["text"] == "" && blocks == nil {
		return nil, fail("no_text")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[p["channel"]]
	if c == nil {
		return nil, fail("channel_not_found")
	}
	if s.users[p["user"]] == nil {
		return nil, fail("user_not_found")
	}
	e := Ephemeral{Channel: c.info.ID, User: p["user"], Text: p["text"], Blocks: blocks, ThreadTS: p["thread_ts"], MessageTS: s.nextTSLocked()}
	s.ephs = append(s.ephs, e)
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "chat.postEphemeral", TS: e.MessageTS, ThreadTS: e.ThreadTS, Text: e.Text, User: e.User})
	s.notifyLocked()
	return map[string]any{"message_ts": e.MessageTS}, nil
}

var reactionRE = regexp.MustCompile(`^[a-z0-9_+'-]{1,100}(::skin-tone-[2-6])?$`)

func (s *Server) reaction(p params, add bool) (map[string]any, *apiError) {
	name := strings.Trim(p["name"], ":")
	if !reactionRE.MatchString(name) {
		return nil, fail("invalid_name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[p["channel"]]
	if c == nil {
		return nil, fail("channel_not_found")
	}
	m := c.find(p["timestamp"])
	if m == nil {
		return nil, fail("message_not_found")
	}
	i := 0
	for i < len(m.Reactions) && m.Reactions[i].Name != name {
		i++
	}
	mine := i < len(m.Reactions) && contains(m.Reactions[i].Users, DefaultBotUser)
	method := "reactions.add"
	switch {
	case add && mine:
		return nil, fail("already_reacted")
	case add && i == len(m.Reactions):
		m.Reactions = append(m.Reactions, Reaction{Name: name, Users: []string{DefaultBotUser}, Count: 1})
	case add:
		m.Reactions[i].Users = append(m.Reactions[i].Users, DefaultBotUser)
		m.Reactions[i].Count++
	case !mine:
		return nil, fail("no_reaction")
	default:
		method = "reactions.remove"
		r := &m.Reactions[i]
		for j, u := range r.Users {
			if u == DefaultBotUser {
				r.Users = append(r.Users[:j], r.Users[j+1:]...)
				break
			}
		}
		r.Count--
		if r.Count == 0 {
			m.Reactions = append(m.Reactions[:i], m.Reactions[i+1:]...)
		}
	}
	c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: method, TS: m.TS, Reaction: name})
	s.notifyLocked()
	return map[string]any{}, nil
}

func (s *Server) reactionsAdd(p params) (map[string]any, *apiError)    { return s.reaction(p, true) }
func (s *Server) reactionsRemove(p params) (map[string]any, *apiError) { return s.reaction(p, false) }

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Files: a file's content is at url_private, /files-pri/<team>-<id>/<name>,
// readable with the bot token as a Bearer header; the bot's uploads go to
// /upload/v1/<id>.
const (
	filesPrefix  = "/files-pri/"
	uploadPrefix = "/upload/v1/"
)

func (s *Server) fileJSON(f *file) map[string]any {
	base := s.URL()
	priv := base + filesPrefix + s.teamID + "-" + f.id + "/" + url.PathEscape(f.name)
	ext := ""
	if i := strings.LastIndexByte(f.name, '.'); i >= 0 {
		ext = strings.ToLower(f.name[i+1:])
	}
	return map[string]any{
		"id": f.id, "created": f.created, "timestamp": f.created, "name": f.name, "title": f.title,
		"mimetype": f.mimetype, "filetype": ext, "pretty_type": strings.ToUpper(ext), "user": f.user,
		"size": len(f.data), "mode": "hosted", "is_external": false, "is_public": false,
		"url_private": priv, "url_private_download": priv + "?download=1", "channels": f.channels,
	}
}

func (s *Server) filesInfo(p params) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[p["file"]]
	if f == nil || (f.user == DefaultBotUser && !f.completed) {
		return nil, fail("file_not_found")
	}
	return map[string]any{"file": s.fileJSON(f), "comments": []any{}, "paging": map[string]int{"count": 100, "total": 1, "page": 1, "pages": 1}}, nil
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, rest string) {
	auth, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if auth != s.botToken {
		// Slack sends a browser without a session to its sign-in page.
		http.Redirect(w, r, "/?redir="+url.QueryEscape(r.URL.Path), http.StatusFound)
		return
	}
	idPart, _, _ := strings.Cut(rest, "/")
	id := strings.TrimPrefix(idPart, s.teamID+"-")
	s.mu.Lock()
	f := s.files[id]
	found := f != nil && (f.user != DefaultBotUser || f.completed)
	var data []byte
	var mt string
	if found {
		data, mt = f.data, f.mimetype
	}
	s.mu.Unlock()
	if !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func (s *Server) getUploadURL(p params) (map[string]any, *apiError) {
	n, err := strconv.Atoi(p["length"])
	if p["filename"] == "" || err != nil || n <= 0 {
		return nil, fail("invalid_arguments")
	}
	if n > MaxUploadSize {
		return nil, fail("file_too_large")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &file{id: s.nextIDLocked("F"), name: p["filename"], title: p["filename"], user: DefaultBotUser, length: n, created: s.clk.Now().Unix()}
	f.mimetype = mime.TypeByExtension(extOf(f.name))
	if f.mimetype == "" {
		f.mimetype = "application/octet-stream"
	}
	s.files[f.id] = f
	s.notifyLocked()
	return map[string]any{"upload_url": s.URL() + uploadPrefix + f.id, "file_id": f.id}, nil
}

func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// serveUpload takes the content of a file announced by
// files.getUploadURLExternal: a raw body, or a multipart form's "file"
// part (what slack-go sends). It answers "OK - <size>" as Slack does.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var data []byte
	var err error
	body := http.MaxBytesReader(w, r.Body, maxBody)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" {
		r.Body = body
		if err = r.ParseMultipartForm(maxBody); err == nil {
			fh := r.MultipartForm.File["file"]
			if len(fh) == 0 {
				err = fmt.Errorf("no file part")
			} else {
				var f io.ReadCloser
				if f, err = fh[0].Open(); err == nil {
					data, err = io.ReadAll(f)
					f.Close()
				}
			}
		}
	} else {
		data, err = io.ReadAll(body)
	}
	if err != nil {
		http.Error(w, "bad upload: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	f := s.files[id]
	ok := f != nil && f.user == DefaultBotUser && !f.completed
	if ok {
		f.data, f.uploaded = data, true
		s.notifyLocked()
	}
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "OK - %d", len(data))
}

func (s *Server) completeUpload(p params) (map[string]any, *apiError) {
	var files []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(p["files"]), &files); err != nil || len(files) == 0 {
		return nil, fail("invalid_arguments")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	chID := p["channel_id"]
	if chID == "" {
		chID, _, _ = strings.Cut(p["channels"], ",")
	}
	var c *channel
	if chID != "" {
		if c = s.chans[chID]; c == nil {
			return nil, fail("channel_not_found")
		}
	}
	thread := p["thread_ts"]
	if thread != "" && (c == nil || c.find(thread) == nil) {
		return nil, fail("invalid_thread_ts")
	}
	for _, fs := range files {
		f := s.files[fs.ID]
		if f == nil || f.user != DefaultBotUser || f.completed {
			return nil, fail("file_not_found")
		}
		if !f.uploaded {
			return nil, fail("file_upload_incomplete")
		}
	}
	var out []map[string]string
	var ids []string
	for _, fs := range files {
		f := s.files[fs.ID]
		f.completed = true
		if fs.Title != "" {
			f.title = fs.Title
		}
		ids = append(ids, f.id)
		out = append(out, map[string]string{"id": f.id, "title": f.title})
	}
	var ts string
	if c != nil {
		m := &Message{User: DefaultBotUser, BotID: DefaultBotID, Text: p["initial_comment"], Files: ids, ThreadTS: thread, TS: s.nextTSLocked()}
		c.msgs = append(c.msgs, m)
		c.ops = append(c.ops, Op{Time: s.clk.Now(), Method: "files.completeUploadExternal", TS: m.TS, ThreadTS: thread, Text: m.Text})
		ts = m.TS
		for _, id := range ids {
			s.files[id].channels = append(s.files[id].channels, c.info.ID)
		}
	}
	for _, id := range ids {
		f := s.files[id]
		s.uploads = append(s.uploads, Upload{FileID: id, Name: f.name, Title: f.title, Size: len(f.data), Channel: chID, ThreadTS: thread, InitialComment: p["initial_comment"], TS: ts})
	}
	s.notifyLocked()
	return map[string]any{"files": out}, nil
}
