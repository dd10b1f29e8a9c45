package campaign

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// pgInstance is a PostgreSQL server of the campaign's own (initdb in a
// temporary folder, run as the postgres user, on a free loopback port),
// so that it can be stopped and made to refuse without touching the
// machine's server.
type pgInstance struct {
	t    *testing.T
	bin  string
	data string
	port int
}

func (p *pgInstance) run(args ...string) {
	p.t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func (p *pgInstance) start() {
	p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "-w", "-l", filepath.Join(p.data, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.port, p.data), "start")
}

func (p *pgInstance) stop() {
	p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "-m", "immediate", "-w", "stop")
}

// hba rewrites pg_hba.conf (trust or reject for loopback) and, when
// reload, makes the running server read it.
func (p *pgInstance) hba(method string, reload bool) {
	line := "local all all trust\nhost all all 127.0.0.1/32 " + method + "\n"
	if err := os.WriteFile(filepath.Join(p.data, "pg_hba.conf"), []byte(line), 0o600); err != nil {
		p.t.Fatal(err)
	}
	if reload {
		p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "reload")
		// pg_hba.conf applies to new connections: end the pooled ones
		p.run(filepath.Join(p.bin, "psql"), "-h", p.data, "-p", fmt.Sprint(p.port), "-U", "postgres", "-d", "postgres", "-qAt", "-c",
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
	}
}

func newPG(t *testing.T) *pgInstance {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Skip("no /usr/lib/postgresql/*/bin/initdb")
	}
	if _, err := exec.LookPath("runuser"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and runuser to run a PostgreSQL server as the postgres user")
	}
	dir, err := os.MkdirTemp("", "campaign-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := &pgInstance{t: t, bin: filepath.Dir(bins[0]), data: filepath.Join(dir, "data"), port: port}
	if err := os.Mkdir(p.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postgres:postgres", p.data).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	p.run(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "postgres", "-A", "trust")
	p.hba("trust", false)
	p.start()
	t.Cleanup(func() {
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "-m", "immediate", "stop").Run()
	})
	return p
}

// Campaign (PostgreSQL stopped and refusing): a daemon on a PostgreSQL
// server of the campaign's own. The server stopped with -m immediate, then
// refusing connections in pg_hba.conf: every accept answers 503 (which
// clients retry), never 500; once the server is back, accepts work and
// every accepted message is answered.
func TestCampaignPostgresDown(t *testing.T) {
	pg := newPG(t)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
	d := daemontest.Start(t, daemontest.Set(daemontest.With(quiet, map[string]any{
		"store.driver": "postgres",
		"store.dsn":    dsn,
	})))
	sent := map[string][]string{}
	for i := range 3 {
		sent["pg"] = append(sent["pg"], d.WaitMessage(d.Send("pg", fmt.Sprintf("before %d", i)), "done", 30*time.Second).ID)
	}
	try := func(n int) map[int]int {
		codes := map[int]int{}
		for i := range n {
			st, body, err := d.Do("POST", "/v1/messages", api.MessageIn{ChatID: "pg", Text: fmt.Sprintf("during %d", i)})
			if err != nil {
				codes[-1]++
			} else {
				codes[st]++
				if st == http.StatusAccepted {
					var acc api.Accepted
					if err := json.Unmarshal(body, &acc); err != nil {
						t.Fatal(err)
					}
					sent["pg"] = append(sent["pg"], acc.ID)
				}
				if st >= 500 && st != http.StatusServiceUnavailable {
					t.Logf("HTTP %d: %s", st, strings.TrimSpace(string(body)))
				}
			}
			time.Sleep(150 * time.Millisecond)
		}
		return codes
	}
	recover := func() time.Duration {
		start := time.Now()
		i := 0
		daemontest.WaitFor(t, func() bool {
			i++
			id, err := sendID(d, "pg", fmt.Sprintf("after %d", i), fmt.Sprintf("after-%d-%d", len(sent["pg"]), i), time.Now().Add(time.Second))
			if err == nil {
				sent["pg"] = append(sent["pg"], id)
			}
			return err == nil
		}, 60*time.Second, "accepts again")
		return time.Since(start)
	}

	pg.stop()
	stopped := try(10)
	pg.start()
	r1 := recover()

	pg.hba("reject", true)
	refusing := try(10)
	pg.hba("trust", true)
	r2 := recover()

	waitIdle(t, d, 60*time.Second)
	v := checkFeed(t, d, sent)
	t.Logf("RESULT PostgreSQL down: accepts while stopped (-m immediate) %v, back after %s; while pg_hba rejects %v, back after %s; %s",
		stopped, r1.Round(time.Millisecond), refusing, r2.Round(time.Millisecond), v)
	for _, codes := range []map[int]int{stopped, refusing} {
		for st := range codes {
			if st != http.StatusServiceUnavailable && st != http.StatusAccepted {
				t.Errorf("an accept answered %d while PostgreSQL was down (codes %v); want 503", st, codes)
			}
		}
	}
}
