package config

import (
	"strings"
	"testing"
)

func TestMaskDSN(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"postgres://dispatch:s3cret@db.example:5432/dispatch?sslmode=require", "postgres://dispatch:(masked)@db.example:5432/dispatch?sslmode=require"},
		{"postgres://dispatch@db/dispatch", "postgres://dispatch@db/dispatch"},
		{"postgres://u@db/d?password=s3cret&sslmode=disable", "postgres://u@db/d?password=(masked)&sslmode=disable"},
		{"host=db user=dispatch password=s3cret dbname=d", "host=db user=dispatch password=(masked) dbname=d"},
		{"host=db password='s3 cret' dbname=d", "host=db password=(masked) dbname=d"},
		{"host=db PASSWORD = s3cret", "host=db PASSWORD = (masked)"},
	} {
		if got := MaskDSN(tt.in); got != tt.want {
			t.Errorf("MaskDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://hooks.example/dispatch", "https://hooks.example/dispatch"},
		{"https://user:pass@hooks.example/x", "https://(masked)@hooks.example/x"},
		{"https://ghp_abcdef@hooks.example/x", "https://(masked)@hooks.example/x"},
		{"https://h.example/x?token=abc&chat=1", "https://h.example/x?chat=1&token=(masked)"},
		{"https://h.example/x?api_key=a&sig=b&Signature=c&access_token=d&page=2", "https://h.example/x?Signature=(masked)&access_token=(masked)&api_key=(masked)&page=2&sig=(masked)"},
		{"https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX1", "https://hooks.slack.com/services/T00000000/B00000000/(masked)"},
		{"https://discord.com/api/webhooks/123/abcDEF123456789012345678901234", "https://discord.com/api/webhooks/123/(masked)"},
		{"https://h.example/a-very-long-path-name-without-digits", "https://h.example/a-very-long-path-name-without-digits"},
		{"https://h.example/x#secretfragment", "https://h.example/x"},
	} {
		if got := MaskURL(tt.in); got != tt.want {
			t.Errorf("MaskURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskEnv(t *testing.T) {
	for _, tt := range []struct{ k, v, want string }{
		{"ANTHROPIC_API_KEY", "sk-ant-123", Masked},
		{"GH_TOKEN", "x", Masked},
		{"DB_PASSWORD", "x", Masked},
		{"FOO", "sk-ant-api03-abc", Masked},
		{"FOO", "ghp_abc", Masked},
		{"FOO", "AKIAIOSFODNN7EXAMPLE", Masked},
		{"HTTPS_PROXY", "http://me:pw@proxy:3128", "http://(masked)@proxy:3128"},
		{"ANTHROPIC_BASE_URL", "http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"LANG", "C.UTF-8", "C.UTF-8"},
		{"EMPTY_TOKEN", "", ""},
	} {
		if got := maskEnv(tt.k, tt.v); got != tt.want {
			t.Errorf("maskEnv(%s=%q) = %q, want %q", tt.k, tt.v, got, tt.want)
		}
	}
}

// config show once printed the DSN's password and the credentials and
// token of webhook URLs.
func TestShowYAMLMasksEverySecret(t *testing.T) {
	cfg, err := Parse([]byte(`
store:
  driver: postgres
  dsn: postgres://dispatch:dsn-pw-1@127.0.0.1:5432/dispatch
webhooks:
  - name: a
    url: https://hookuser:hook-pw-2@127.0.0.1/hook?token=hook-token-3&chat=x
    secret: whsec_aG9vay1zZWNyZXQtNC1sb25nZXIta2V5
agent:
  env:
    ANTHROPIC_API_KEY: env-key-5
    OTHER: sk-ant-env-6
    HTTPS_PROXY: http://proxyuser:proxy-pw-7@127.0.0.1:3128
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.ShowYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"dsn-pw-1", "hook-pw-2", "hookuser", "hook-token-3", "aG9vay1zZWNyZXQtNC1sb25nZXIta2V5", "env-key-5", "sk-ant-env-6", "proxy-pw-7"} {
		if strings.Contains(string(out), s) {
			t.Errorf("config show printed the secret %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"postgres://dispatch:(masked)@127.0.0.1:5432/dispatch", "chat=x", "http://(masked)@127.0.0.1:3128"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("config show lacks %q:\n%s", s, out)
		}
	}
}
