package doctor

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shortDir is a temp dir with a short path: unix socket paths are limited
// to ~104 bytes, and t.TempDir() paths can be long.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "doc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testConfig(t *testing.T, kind string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = shortDir(t)
	if err := os.Chmod(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.Agent.Kind = kind
	return cfg
}

func want(t *testing.T, r Result, status Status, detailHas ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (%s)", r.Name, r.Status, status, Format(r))
	}
	for _, s := range detailHas {
		if !strings.Contains(r.Detail, s) {
			t.Errorf("%s: detail %q does not contain %q", r.Name, r.Detail, s)
		}
	}
	if status == Fail && r.Hint == "" {
		t.Errorf("%s: failure without a hint: %s", r.Name, Format(r))
	}
}

// ---- config ----

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("state_dir: "+dir+"\nagent:\n  kind: echo\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("health:\n  idle_timeout: 2x\n"), 0o600)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("health:\n  idel_timeout: 2h\n"), 0o600)

	cfg, r := CheckConfig(good, config.Load)
	want(t, r, Pass, good, "agent echo", dir)
	if cfg.Agent.Kind != "echo" {
		t.Errorf("config not returned: %+v", cfg.Agent)
	}

	_, r = CheckConfig("", config.Load)
	want(t, r, Pass, "built-in defaults")

	_, r = CheckConfig(bad, config.Load)
	want(t, r, Fail, "health.idle_timeout", `"2x"`)
	if !strings.Contains(r.Hint, "health.idle_timeout") || !strings.Contains(r.Hint, bad) {
		t.Errorf("hint does not name the key and file: %q", r.Hint)
	}

	_, r = CheckConfig(unknown, config.Load)
	want(t, r, Fail, "unknown key health.idel_timeout")
	if !strings.Contains(r.Hint, "health.idel_timeout") {
		t.Errorf("hint does not name the key: %q", r.Hint)
	}

	_, r = CheckConfig(filepath.Join(dir, "missing.yaml"), config.Load)
	want(t, r, Fail, "missing.yaml")
	if !strings.Contains(r.Hint, "create the file") {
		t.Errorf("hint %q", r.Hint)
	}
}

func TestRunStopsWhenConfigFails(t *testing.T) {
	var out bytes.Buffer
	rep := Run(context.Background(), &out, "x.yaml", func(string) (config.Config, error) {
		return config.Config{}, &config.Error{Key: "queue.max_attempts", Msg: "must be at least 1"}
	}, Env{})
	if rep.OK() || rep.Failed != 1 || len(rep.Results) != 1 {
		t.Fatalf("report %+v", rep)
	}
	s := out.String()
	if !strings.HasPrefix(s, "✘ config") || !strings.Contains(s, "queue.max_attempts") || !strings.Contains(s, "skipped") {
		t.Fatalf("output:\n%s", s)
	}
}

// ---- agent ----

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-claude")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckAgentEcho(t *testing.T) {
	r := CheckAgent(context.Background(), testConfig(t, "echo"), Env{
		LookPath: func(string) (string, error) { t.Fatal("LookPath called for echo"); return "", nil },
	})
	want(t, r, Pass, "no executable needed")
}

func TestCheckAgentNotFound(t *testing.T) {
	cfg := testConfig(t, "claude")
	cfg.Agent.Command = "claude-that-does-not-exist"
	r := CheckAgent(context.Background(), cfg, Env{Environ: func() []string { return []string{"PATH=" + t.TempDir()} }})
	want(t, r, Fail, `"claude-that-does-not-exist"`, "not found")
	if !strings.Contains(r.Hint, "agent.command") {
		t.Errorf("hint %q", r.Hint)
	}
}

func TestCheckAgentVersionWithAgentEnvironment(t *testing.T) {
	cfg := testConfig(t, "claude")
	cfg.Agent.Command = script(t, `echo; echo "2.1.3 (Claude Code) FOO=$FOO CLAUDECODE=${CLAUDECODE:-unset} KEEP=$KEEP SECRET=${SECRET:-unset}"; echo second line`)
	cfg.Agent.Env = map[string]string{"FOO": "from-agent-env"}
	cfg.Agent.EnvPassthrough = []string{"KEEP"}
	r := CheckAgent(context.Background(), cfg, Env{
		Environ: func() []string {
			return []string{"PATH=/usr/bin:/bin", "CLAUDECODE=1", "FOO=from-doctor", "KEEP=kept", "SECRET=s"}
		},
	})
	want(t, r, Pass, cfg.Agent.Command, "2.1.3 (Claude Code) FOO=from-agent-env CLAUDECODE=unset KEEP=kept SECRET=unset")
	if strings.Contains(r.Detail, "second line") {
		t.Errorf("detail holds more than the first line: %q", r.Detail)
	}
}

func TestCheckAgentVersionFails(t *testing.T) {
	cfg := testConfig(t, "claude")
	cfg.Agent.Command = script(t, `echo "Error: node: not found" >&2; exit 3`)
	r := CheckAgent(context.Background(), cfg, Env{})
	want(t, r, Fail, "--version failed", "exit status 3", "node: not found")
}

func TestCheckAgentVersionTimesOut(t *testing.T) {
	cfg := testConfig(t, "claude")
	cfg.Agent.Command = script(t, `sleep 30 & sleep 30`)
	start := time.Now()
	r := CheckAgent(context.Background(), cfg, Env{VersionTimeout: 200 * time.Millisecond})
	want(t, r, Fail, "did not finish within 200ms")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("timeout took %s: the process group was not killed", took)
	}
}

func TestCheckAgentUsesLookPath(t *testing.T) {
	cfg := testConfig(t, "claude")
	var ran string
	r := CheckAgent(context.Background(), cfg, Env{
		LookPath: func(f string) (string, error) { return "/opt/bin/" + f, nil },
		RunVersion: func(_ context.Context, p string, env []string) (string, error) {
			ran = p
			return "9.9.9\n", nil
		},
	})
	want(t, r, Pass, "/opt/bin/claude: 9.9.9")
	if ran != "/opt/bin/claude" {
		t.Errorf("ran %q", ran)
	}
}

// ---- AI API ----

type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []string
}

func newFakeAPI(t *testing.T, h http.HandlerFunc) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func TestCheckAPIReachableFromAgentEnv(t *testing.T) {
	api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	cfg := testConfig(t, "claude")
	cfg.Agent.Env = map[string]string{"ANTHROPIC_BASE_URL": api.URL}
	r := CheckAPI(context.Background(), cfg, Env{Getenv: func(string) string { return "http://127.0.0.1:1" }})
	want(t, r, Pass, api.URL, "agent.env.ANTHROPIC_BASE_URL", "HTTP 404")
	if got := api.requests(); len(got) != 1 || got[0] != "HEAD /" {
		t.Fatalf("requests %v, want one HEAD / (never a messages request)", got)
	}
}

func TestCheckAPIFromEnvironmentAndAnyAnswer(t *testing.T) {
	api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/proxy" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	cfg := testConfig(t, "claude")
	r := CheckAPI(context.Background(), cfg, Env{Getenv: func(k string) string {
		if k == "ANTHROPIC_BASE_URL" {
			return api.URL + "/proxy"
		}
		return ""
	}})
	want(t, r, Pass, "$ANTHROPIC_BASE_URL", "HTTP 302")
	if got := api.requests(); len(got) != 1 {
		t.Fatalf("requests %v: a redirect was followed", got)
	}
	cfg.Agent.Env = map[string]string{"ANTHROPIC_BASE_URL": api.URL}
	want(t, CheckAPI(context.Background(), cfg, Env{}), Pass, "HTTP 503")
}

func TestAPIBaseURLDefault(t *testing.T) {
	cfg := testConfig(t, "claude")
	base, src := APIBaseURL(cfg, func(string) string { return "" })
	if base != DefaultAPIBaseURL || src != "default" {
		t.Fatalf("%q %q", base, src)
	}
}

func TestCheckAPIUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := testConfig(t, "claude")
	cfg.Agent.Env = map[string]string{"ANTHROPIC_BASE_URL": "http://" + addr}
	r := CheckAPI(context.Background(), cfg, Env{})
	want(t, r, Fail, addr, "not reachable")
	if !strings.Contains(r.Hint, "agent.env.ANTHROPIC_BASE_URL") {
		t.Errorf("hint %q", r.Hint)
	}
}

func TestCheckAPITimeout(t *testing.T) {
	release := make(chan struct{})
	api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	cfg := testConfig(t, "claude")
	cfg.Agent.Env = map[string]string{"ANTHROPIC_BASE_URL": api.URL}
	r := CheckAPI(context.Background(), cfg, Env{HTTPTimeout: 100 * time.Millisecond})
	want(t, r, Fail, "no answer before the timeout")
}

func TestCheckAPIBadURLAndEcho(t *testing.T) {
	cfg := testConfig(t, "claude")
	cfg.Agent.Env = map[string]string{"ANTHROPIC_BASE_URL": "ftp://example.com"}
	want(t, CheckAPI(context.Background(), cfg, Env{}), Fail, "agent.env.ANTHROPIC_BASE_URL", "not an http(s) URL")
	cfg = testConfig(t, "echo")
	want(t, CheckAPI(context.Background(), cfg, Env{}), Pass, "not needed")
}

// ---- state dir, log dir ----

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestCheckStateDir(t *testing.T) {
	cfg := testConfig(t, "echo")
	want(t, CheckStateDir(cfg), Pass, "is writable")
	if left := dirEntries(t, cfg.StateDir); len(left) != 0 {
		t.Fatalf("left files behind: %v", left)
	}

	os.Chmod(cfg.StateDir, 0o755)
	r := CheckStateDir(cfg)
	want(t, r, Warn, "0755")
	if !strings.Contains(r.Hint, "chmod 700") {
		t.Errorf("hint %q", r.Hint)
	}

	missing := cfg
	missing.StateDir = filepath.Join(cfg.StateDir, "a", "b")
	want(t, CheckStateDir(missing), Pass, "does not exist yet")

	file := cfg
	file.StateDir = filepath.Join(cfg.StateDir, "file")
	os.WriteFile(file.StateDir, nil, 0o600)
	want(t, CheckStateDir(file), Fail, "not a directory")
}

func TestCheckStateDirRefusesSharedDirectories(t *testing.T) {
	cfg := testConfig(t, "echo")
	os.Chmod(cfg.StateDir, 0o777)
	r := CheckStateDir(cfg)
	want(t, r, Fail, "group or others write")
	if !strings.Contains(r.Hint, "refuses to start") {
		t.Errorf("hint %q", r.Hint)
	}
}

func TestCheckTokens(t *testing.T) {
	cfg := testConfig(t, "echo")
	want(t, CheckTokens(cfg), Pass, "no TCP listener")
	dir := t.TempDir()
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.TokenFile = filepath.Join(dir, "token")
	cfg.API.MetricsTokenFile = filepath.Join(dir, "metrics")
	os.WriteFile(cfg.API.TokenFile, []byte("0123456789abcdef0123"), 0o600)
	os.WriteFile(cfg.API.MetricsTokenFile, []byte("fedcba9876543210fedc"), 0o600)
	want(t, CheckTokens(cfg), Pass, "private")
	os.Chmod(cfg.API.MetricsTokenFile, 0o644)
	r := CheckTokens(cfg)
	want(t, r, Fail, "api.metrics_token_file")
	if !strings.Contains(r.Detail, "chmod 600") {
		t.Errorf("detail %q", r.Detail)
	}
}

func TestCheckStateDirNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write anywhere")
	}
	cfg := testConfig(t, "echo")
	os.Chmod(cfg.StateDir, 0o500)
	t.Cleanup(func() { os.Chmod(cfg.StateDir, 0o700) })
	want(t, CheckStateDir(cfg), Fail, "not writable")

	missing := cfg
	missing.StateDir = filepath.Join(cfg.StateDir, "sub")
	want(t, CheckStateDir(missing), Fail, "cannot be created")
}

func TestCheckLogDir(t *testing.T) {
	cfg := testConfig(t, "echo")
	want(t, CheckLogDir(cfg), Pass, "does not exist yet")

	logs := filepath.Join(cfg.StateDir, "logs")
	os.MkdirAll(logs, 0o700)
	os.WriteFile(filepath.Join(logs, "manager.log"), []byte("line\n"), 0o600)
	want(t, CheckLogDir(cfg), Pass, logs+" is writable")
	if b, _ := os.ReadFile(filepath.Join(logs, "manager.log")); string(b) != "line\n" {
		t.Fatalf("manager.log changed: %q", b)
	}

	// A log path the daemon cannot open for writing.
	os.Remove(filepath.Join(logs, "manager.log"))
	os.Mkdir(filepath.Join(logs, "manager.log"), 0o700)
	want(t, CheckLogDir(cfg), Fail, "manager.log")
}

// ---- disk ----

func TestCheckDisk(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name   string
		disk   Disk
		status Status
		has    string
	}{
		{"plenty", Disk{Total: 100 * gib, Free: 60 * gib, Avail: 55 * gib}, Pass, "55.0 GiB free (42% used)"},
		{"over 90% used", Disk{Total: 100 * gib, Free: 8 * gib, Avail: 8 * gib}, Warn, "92% used"},
		{"under 5% free", Disk{Total: 100 * 1024 * gib, Free: 3 * 1024 * gib, Avail: 3 * 1024 * gib}, Fail, "97% used"},
		{"under 500 MB", Disk{Total: 2 * gib, Free: 400 << 20, Avail: 400 << 20}, Fail, "400.0 MiB free"},
		{"reserved blocks count as used", Disk{Total: 100 * gib, Free: 10 * gib, Avail: 5 * gib}, Warn, "95% used"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, "echo")
			var asked string
			r := CheckDisk(cfg, Env{DiskUsage: func(p string) (Disk, error) { asked = p; return c.disk, nil }})
			want(t, r, c.status, c.has)
			if asked != cfg.StateDir {
				t.Errorf("statfs of %q, want %q", asked, cfg.StateDir)
			}
		})
	}

	cfg := testConfig(t, "echo")
	cfg.StateDir = filepath.Join(cfg.StateDir, "not", "yet")
	var asked string
	CheckDisk(cfg, Env{DiskUsage: func(p string) (Disk, error) {
		asked = p
		return Disk{Total: 1 << 40, Free: 1 << 39, Avail: 1 << 39}, nil
	}})
	if asked != filepath.Dir(filepath.Dir(cfg.StateDir)) {
		t.Errorf("missing state dir: statfs of %q, want its nearest existing ancestor", asked)
	}

	r := CheckDisk(testConfig(t, "echo"), Env{DiskUsage: func(string) (Disk, error) { return Disk{}, errors.New("boom") }})
	if r.Status != Fail || !strings.Contains(r.Detail, "boom") {
		t.Errorf("%s", Format(r))
	}

	d, err := statfs(t.TempDir())
	if err != nil || d.Total == 0 || d.Avail > d.Total {
		t.Errorf("real statfs: %+v, %v", d, err)
	}
}

// ---- store ----

// makeDB creates a WAL database like the store's and returns an open
// writer connection (a running daemon), closed at cleanup.
func makeDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE TABLE messages (id TEXT PRIMARY KEY, chat_id TEXT, text TEXT)",
		"CREATE INDEX messages_chat ON messages(chat_id)",
		"PRAGMA user_version = 7",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, err := tx.Exec("INSERT INTO messages VALUES (?, ?, ?)", strconv.Itoa(i), "chat"+strconv.Itoa(i%7),
			strings.Repeat("x", 200)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestCheckStoreMissing(t *testing.T) {
	cfg := testConfig(t, "echo")
	want(t, CheckStore(context.Background(), cfg, Env{}), Pass, "not created yet")
	if _, err := os.Stat(cfg.DBPath()); !os.IsNotExist(err) {
		t.Fatal("the check created the database")
	}
}

func TestCheckStoreWhileDaemonHoldsIt(t *testing.T) {
	cfg := testConfig(t, "echo")
	db := makeDB(t, cfg.DBPath())
	// A write transaction in progress, as a busy daemon would have.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO messages VALUES ('open', 'c', 't')"); err != nil {
		t.Fatal(err)
	}
	want(t, CheckStore(context.Background(), cfg, Env{}), Pass, "quick_check ok", "schema v7", " WAL, ")
	if err := tx.Commit(); err != nil {
		t.Fatalf("the daemon's write failed after the check: %v", err)
	}
	if _, err := db.Exec("INSERT INTO messages VALUES ('after', 'c', 't')"); err != nil {
		t.Fatalf("the daemon cannot write after the check: %v", err)
	}
}

func TestCheckStoreAfterCleanClose(t *testing.T) {
	cfg := testConfig(t, "echo")
	db := makeDB(t, cfg.DBPath())
	db.Close() // checkpoints and removes -wal and -shm
	want(t, CheckStore(context.Background(), cfg, Env{}), Pass, "quick_check ok")
}

func TestCheckStoreCorrupt(t *testing.T) {
	cfg := testConfig(t, "echo")
	os.WriteFile(cfg.DBPath(), bytes.Repeat([]byte("not a database "), 1000), 0o600)
	r := CheckStore(context.Background(), cfg, Env{})
	want(t, r, Fail, cfg.DBPath())
	if !strings.Contains(r.Hint, "copy dispatch.db") {
		t.Errorf("hint %q", r.Hint)
	}

	// A real database with damaged pages.
	cfg = testConfig(t, "echo")
	db := makeDB(t, cfg.DBPath())
	db.Close()
	f, err := os.OpenFile(cfg.DBPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	garbage := bytes.Repeat([]byte{0xA5}, 4096)
	for off := int64(4096 * 2); off < fi.Size(); off += 4096 * 3 {
		f.WriteAt(garbage[:512], off+100)
	}
	f.Close()
	want(t, CheckStore(context.Background(), cfg, Env{}), Fail)

	cfg = testConfig(t, "echo")
	os.Mkdir(cfg.DBPath(), 0o700)
	want(t, CheckStore(context.Background(), cfg, Env{}), Fail, "not a regular file")
}

// ---- daemon ----

// fakeDaemon serves handler on cfg's control socket.
func fakeDaemon(t *testing.T, cfg config.Config, h http.Handler) {
	t.Helper()
	ln, err := net.Listen("unix", cfg.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

func statusJSON(failed string, api string) string {
	sessions := `{"chat_id":"alice","state":"idle"}`
	if failed != "" {
		sessions += fmt.Sprintf(`,{"chat_id":%q,"state":"failed"}`, failed)
	}
	return fmt.Sprintf(`{"daemon":{"pid":1234,"version":"1.2.3","uptime_seconds":3725.4,"api":%q},
		"sessions":[%s],"queue":{"pending":2,"inflight":1,"dead":0}}`, api, sessions)
}

func daemonMux(healthz int, status string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(healthz)
		if healthz == http.StatusOK {
			fmt.Fprint(w, `{"status":"ok"}`)
		} else {
			fmt.Fprint(w, `{"error":"the supervisor's loops are not ticking"}`)
		}
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, status) })
	return mux
}

func TestCheckDaemonHealthy(t *testing.T) {
	cfg := testConfig(t, "echo")
	fakeDaemon(t, cfg, daemonMux(http.StatusOK, statusJSON("", "up")))
	want(t, CheckDaemon(context.Background(), cfg, Env{}), Pass,
		"healthy: pid 1234, version 1.2.3, up 1h2m5s, API up, 1 session, queue 2 pending / 1 in flight / 0 dead")
}

func TestCheckDaemonWarnings(t *testing.T) {
	cfg := testConfig(t, "echo")
	fakeDaemon(t, cfg, daemonMux(http.StatusOK, statusJSON("bob", "up")))
	r := CheckDaemon(context.Background(), cfg, Env{})
	want(t, r, Warn, "2 sessions (1 failed)")
	if !strings.Contains(r.Hint, "dispatch sessions restart bob") {
		t.Errorf("hint %q", r.Hint)
	}

	cfg = testConfig(t, "echo")
	fakeDaemon(t, cfg, daemonMux(http.StatusOK, statusJSON("", "down")))
	want(t, CheckDaemon(context.Background(), cfg, Env{}), Warn, "API down")

	// A status that does not parse still leaves a healthy daemon healthy.
	cfg = testConfig(t, "echo")
	fakeDaemon(t, cfg, daemonMux(http.StatusOK, "garbage"))
	want(t, CheckDaemon(context.Background(), cfg, Env{}), Pass, "healthy ("+cfg.SocketPath()+")")
}

func TestCheckDaemonUnhealthy(t *testing.T) {
	cfg := testConfig(t, "echo")
	fakeDaemon(t, cfg, daemonMux(http.StatusServiceUnavailable, ""))
	want(t, CheckDaemon(context.Background(), cfg, Env{}), Fail, "503", "not ticking")
}

func TestCheckDaemonNotRunning(t *testing.T) {
	cfg := testConfig(t, "echo")
	r := CheckDaemon(context.Background(), cfg, Env{})
	want(t, r, Info, "not running", "no control socket")
	if !strings.Contains(r.Hint, "dispatch daemon") {
		t.Errorf("hint %q", r.Hint)
	}
	want(t, CheckDaemon(context.Background(), cfg, Env{RequireDaemon: true}), Fail, "not running")

	// The lock names a live process, but there is no socket.
	os.WriteFile(cfg.LockPath(), []byte("4321\n"), 0o600)
	alive := func(pid int) bool { return pid == 4321 }
	want(t, CheckDaemon(context.Background(), cfg, Env{ProcessAlive: alive}), Fail, "pid 4321 holds")
	// ... a dead one: not running.
	want(t, CheckDaemon(context.Background(), cfg, Env{ProcessAlive: func(int) bool { return false }}), Info, "not running")
}

func TestCheckDaemonStaleSocket(t *testing.T) {
	cfg := testConfig(t, "echo")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.SocketPath(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: a daemon killed with -9
	want(t, CheckDaemon(context.Background(), cfg, Env{}), Info, "stale control socket")

	os.WriteFile(cfg.LockPath(), []byte("4321\n"), 0o600)
	want(t, CheckDaemon(context.Background(), cfg, Env{ProcessAlive: func(int) bool { return true }}), Fail,
		"pid 4321 holds the lock", "does not answer")
}

func TestCheckDaemonNotASocket(t *testing.T) {
	cfg := testConfig(t, "echo")
	os.WriteFile(cfg.SocketPath(), nil, 0o600)
	want(t, CheckDaemon(context.Background(), cfg, Env{}), Fail, "not a socket")
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("own pid not alive")
	}
	if processAlive(0) || processAlive(-1) {
		t.Error("pid <= 0 alive")
	}
}

// ---- the whole run ----

func TestRunAllPassWithEcho(t *testing.T) {
	dir := shortDir(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	state := filepath.Join(dir, "state")
	os.WriteFile(cfgPath, []byte("state_dir: "+state+"\nagent:\n  kind: echo\n"), 0o600)
	var out bytes.Buffer
	rep := Run(context.Background(), &out, cfgPath, nil, Env{
		DiskUsage: func(string) (Disk, error) { return Disk{Total: 1 << 40, Free: 1 << 39, Avail: 1 << 39}, nil },
	})
	if !rep.OK() || rep.Warned != 0 {
		t.Fatalf("report %+v\n%s", rep, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var marks []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "    hint: ") {
			marks = append(marks, strings.Fields(l)[0]+" "+strings.Fields(l)[1])
		}
	}
	wantMarks := []string{"✔ config", "✔ agent", "✔ AI", "✔ state", "✔ disk", "✔ store", "- daemon", "✔ memory", "✔ log", "✔ API", "✔ sandbox"}
	if strings.Join(marks, "|") != strings.Join(wantMarks, "|") {
		t.Fatalf("lines:\n%s", out.String())
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Error("doctor created the state dir")
	}
}

func TestRunOneRecoversPanic(t *testing.T) {
	r := runOne(context.Background(), Check{Name: "boom", Run: func(context.Context) Result { panic("oops") }})
	if r.Status != Fail || r.Name != "boom" || !strings.Contains(r.Detail, "oops") {
		t.Fatalf("%+v", r)
	}
}

func TestFormat(t *testing.T) {
	got := Format(Result{Name: "store", Status: Fail, Detail: "broken", Hint: "fix it"})
	if got != "✘ store       broken\n    hint: fix it" {
		t.Fatalf("%q", got)
	}
	if got := Format(Result{Name: "store", Status: Pass, Detail: "fine", Hint: "unused"}); got != "✔ store       fine" {
		t.Fatalf("%q", got)
	}
}

func TestCheckSandbox(t *testing.T) {
	noBwrap := errors.New("bubblewrap (bwrap) is not installed")
	for _, tt := range []struct {
		kind, mode string
		probe      error
		want       Status
	}{
		{"claude", "auto", nil, Pass},
		{"claude", "on", nil, Pass},
		{"claude", "auto", noBwrap, Warn},
		{"claude", "on", noBwrap, Fail},
		{"claude", "off", nil, Info},
		{"echo", "on", noBwrap, Pass},
	} {
		cfg, _ := config.Parse(nil)
		cfg.Agent.Kind, cfg.Agent.Sandbox.Mode = tt.kind, tt.mode
		probe := tt.probe
		r := CheckSandbox(context.Background(), cfg, Env{SandboxProbe: func(context.Context) error { return probe }})
		if r.Status != tt.want {
			t.Errorf("%s/%s/%v: %v (%s), want %v", tt.kind, tt.mode, tt.probe, r.Status, r.Detail, tt.want)
		}
	}
}
