package fakeapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func controlCall(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestControl(t *testing.T) {
	s, c := startServer(t)
	s.EnableControl()
	ctl := s.URL() + ControlPrefix

	if code, b := controlCall(t, c, "POST", ctl+"mode?m=529"); code != 200 || b != `{"mode":"529"}` {
		t.Fatalf("set mode: %d %s", code, b)
	}
	if code, b := controlCall(t, c, "GET", ctl+"mode"); code != 200 || b != `{"mode":"529"}` {
		t.Errorf("get mode: %d %s", code, b)
	}
	if resp := post(t, c, s.URL()+"/v1/messages", body(false)); resp.StatusCode != 529 {
		t.Errorf("status %d in 529 mode", resp.StatusCode)
	}
	for _, bad := range []string{"mode?m=nope", "mode?m=ok&for=x", "slow?d=-1s"} {
		if code, _ := controlCall(t, c, "POST", ctl+bad); code != 400 {
			t.Errorf("%s: status %d, want 400", bad, code)
		}
	}
	if code, _ := controlCall(t, c, "POST", ctl+"slow?d=1ms"); code != 200 {
		t.Errorf("slow: %d", code)
	}
	if code, _ := controlCall(t, c, "GET", ctl+"nothing"); code != 404 {
		t.Errorf("unknown control path: %d", code)
	}

	post(t, c, s.URL()+"/v1/models", "")
	for _, tc := range []struct {
		query string
		n     int
	}{{"", 1}, {"?all=1", 2}} {
		code, b := controlCall(t, c, "GET", ctl+"requests"+tc.query)
		var recs []Recorded
		if err := json.Unmarshal([]byte(b), &recs); err != nil || code != 200 {
			t.Fatalf("requests%s: %d %v", tc.query, code, err)
		}
		if len(recs) != tc.n || recs[0].Request == nil || recs[0].Request.Model != "claude-test" || recs[0].Mode != Mode529 {
			t.Errorf("requests%s = %+v", tc.query, recs)
		}
	}
}

func TestControlRefuseFor(t *testing.T) {
	s, c := startServer(t)
	s.EnableControl()
	if code, b := controlCall(t, c, "POST", s.URL()+ControlPrefix+"mode?m=refuse&for=200ms"); code != 200 || !strings.Contains(b, "refuse") {
		t.Fatalf("%d %s", code, b)
	}
	if _, err := c.Get(s.URL() + ControlPrefix + "mode"); !isRefused(err) {
		t.Fatalf("err = %v, want refused", err)
	}
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var resp *http.Response
		if resp, err = c.Get(s.URL() + ControlPrefix + "mode"); err == nil {
			resp.Body.Close()
			break
		}
	}
	if err != nil || s.Mode() != ModeOK {
		t.Fatalf("not back after for=: %v, mode %s", err, s.Mode())
	}
}

func TestControlPlainRefuseAnswers(t *testing.T) {
	s, c := startServer(t)
	s.EnableControl()
	// The answer must arrive complete although the switch closes the connection it came on.
	if code, b := controlCall(t, c, "POST", s.URL()+ControlPrefix+"mode?m=refuse"); code != 200 || b != `{"mode":"refuse"}` {
		t.Fatalf("%d %s", code, b)
	}
	if s.Mode() != ModeRefuse {
		t.Errorf("mode %s", s.Mode())
	}
}

func TestControlNotServedUnlessEnabled(t *testing.T) {
	s, c := startServer(t)
	if code, b := controlCall(t, c, "POST", s.URL()+ControlPrefix+"mode?m=529"); code != 200 || b != "{}" || s.Mode() != ModeOK {
		t.Errorf("%d %s, mode %s", code, b, s.Mode())
	}
}
