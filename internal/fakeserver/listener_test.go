package fakeserver

import (
	"io"
	"net"
	"net/http"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"[::1]:0", true},
		{"localhost:8080", true},
		{"0.0.0.0:0", false},
		{"10.0.0.1:80", false},
		{"example.com:80", false},
		{"127.0.0.1", false}, // no port
	} {
		if err := CheckLoopback(tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
}

func TestStopResumeKeepsPort(t *testing.T) {
	var l Listener
	if l.URL() != "" || l.Started() {
		t.Fatal("a new Listener reports an address")
	}
	if err := l.Start("0.0.0.0:0", http.NotFoundHandler()); err == nil {
		t.Fatal("Start on a non-loopback address succeeded")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") })
	if err := l.Start("127.0.0.1:0", h); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if err := l.Start("127.0.0.1:0", h); err == nil {
		t.Fatal("second Start succeeded")
	}
	url := l.URL()
	get := func() error {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(); err != nil || l.Listening() {
		t.Fatalf("Stop = %v, listening %v", err, l.Listening())
	}
	if _, err := net.Dial("tcp", url[len("http://"):]); err == nil {
		t.Fatal("a connection was accepted after Stop")
	}
	if err := l.Resume(); err != nil || !l.Listening() {
		t.Fatalf("Resume = %v, listening %v", err, l.Listening())
	}
	if l.URL() != url {
		t.Fatalf("URL after Resume = %q, want %q", l.URL(), url)
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
}
