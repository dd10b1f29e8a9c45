package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadableSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		mode       os.FileMode
		keys       string // "" = no warning
	}{
		{"api key at 0644", "agent:\n  env:\n    ANTHROPIC_API_KEY: sk-ant-x\n", 0o644, "agent.env.ANTHROPIC_API_KEY"},
		{"api key at 0640", "agent:\n  env:\n    ANTHROPIC_API_KEY: sk-ant-x\n", 0o640, "agent.env.ANTHROPIC_API_KEY"},
		{"api key at 0600", "agent:\n  env:\n    ANTHROPIC_API_KEY: sk-ant-x\n", 0o600, ""},
		{"no secret at 0644", "agent:\n  env:\n    ANTHROPIC_BASE_URL: http://127.0.0.1:1\n", 0o644, ""},
		{"webhook secret and dsn password", "store:\n  driver: postgres\n  dsn: postgres://u:pw@127.0.0.1/db\nwebhooks:\n  - url: http://127.0.0.1:9/\n    secret: whsec_MDEyMzQ1Njc4OWFiY2RlZg==\n", 0o604,
			"store.dsn, webhooks[0].secret"},
		{"dsn without password", "store:\n  driver: postgres\n  dsn: host=127.0.0.1 user=u dbname=d\n", 0o644, ""},
		{"dsn key=value password", "store:\n  driver: postgres\n  dsn: host=127.0.0.1 user=u password=pw\n", 0o644, "store.dsn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			got := ReadableSecrets(p, c)
			if tc.keys == "" {
				if got != "" {
					t.Errorf("warned %q", got)
				}
				return
			}
			if !strings.Contains(got, "("+tc.keys+")") || !strings.Contains(got, "chmod 600 "+p) {
				t.Errorf("warning %q, want the keys %s and the chmod", got, tc.keys)
			}
			if strings.Contains(got, "sk-ant-x") || strings.Contains(got, "pw") && !strings.Contains(p, "pw") {
				t.Errorf("the warning repeats a secret: %q", got)
			}
		})
	}
	if got := ReadableSecrets("", Default()); got != "" {
		t.Errorf("no file: %q", got)
	}
}
