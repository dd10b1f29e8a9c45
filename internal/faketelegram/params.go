package faketelegram

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// params holds a request's parameters however they came: objects and
// arrays as JSON text, as the form encodings carry them.
type params struct {
	vals  map[string]string
	files map[string]upload
}

type upload struct {
	name string
	data []byte
}

// readParams collects the parameters of the query string and of the body,
// which may be JSON, URL-encoded or multipart.
func readParams(r *http.Request) (*params, *apiError) {
	p := &params{vals: map[string]string{}, files: map[string]upload{}}
	for k, v := range r.URL.Query() {
		p.vals[k] = v[0]
	}
	if r.Body == nil {
		return p, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	switch ct {
	case "application/json":
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, tooLarge(err)
		}
		if len(strings.TrimSpace(string(raw))) == 0 {
			return p, nil
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, badRequest("can't parse JSON encoded request: %v", err)
		}
		for k, v := range m {
			var s string
			if json.Unmarshal(v, &s) == nil {
				p.vals[k] = s
			} else if string(v) != "null" {
				p.vals[k] = string(v)
			}
		}
	case "application/x-www-form-urlencoded":
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, tooLarge(err)
		}
		vs, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, badRequest("can't parse request body: %v", err)
		}
		for k, v := range vs {
			p.vals[k] = v[0]
		}
	case "multipart/form-data":
		r.Body = body
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, badRequest("can't parse multipart request: %v", err)
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) { // also an empty body, as a client sends for no parameters
				break
			}
			if err != nil {
				return nil, tooLarge(err)
			}
			data, err := io.ReadAll(part)
			if err != nil {
				return nil, tooLarge(err)
			}
			if part.FileName() != "" {
				p.files[part.FormName()] = upload{name: part.FileName(), data: data}
			} else {
				p.vals[part.FormName()] = string(data)
			}
		}
	}
	return p, nil
}

func tooLarge(err error) *apiError {
	if _, ok := err.(*http.MaxBytesError); ok {
		return &apiError{code: http.StatusRequestEntityTooLarge, desc: "Request Entity Too Large"}
	}
	return badRequest("can't read request: %v", err)
}

func (p *params) str(name string) string { return p.vals[name] }

func (p *params) has(name string) bool {
	_, ok := p.vals[name]
	return ok
}

// int64 parses an integer parameter; a missing one is 0.
func (p *params) int64(name string) (int64, *apiError) {
	v, ok := p.vals[name]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, badRequest("invalid %s specified", name)
	}
	return n, nil
}

// json decodes an object or array parameter into dst; ok is false when the
// parameter is missing.
func (p *params) json(name string, dst any) (ok bool, e *apiError) {
	v, ok := p.vals[name]
	if !ok || v == "" {
		return false, nil
	}
	if err := json.Unmarshal([]byte(v), dst); err != nil {
		return true, badRequest("can't parse %s JSON object", name)
	}
	return true, nil
}

func (p *params) summary() map[string]string {
	m := make(map[string]string, len(p.vals)+len(p.files))
	for k, v := range p.vals {
		m[k] = v
	}
	for k, f := range p.files {
		m[k] = fmt.Sprintf("<file %s, %d bytes>", f.name, len(f.data))
	}
	return m
}
