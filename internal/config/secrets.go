package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
)

// SecretKeys names the keys of c that hold a secret in the file itself:
// agent.env values whose names look secret (…KEY, …TOKEN, …PASSWORD),
// webhook secrets, and a password in store.dsn. Token files are not
// among them (they are files of their own, checked when read).
func (c Config) SecretKeys() []string {
	var keys []string
	for k, v := range c.Agent.Env {
		if v != "" && secretEnv.MatchString(k) {
			keys = append(keys, "agent.env."+k)
		}
	}
	for i, w := range c.Webhooks {
		if w.Secret != "" {
			keys = append(keys, fmt.Sprintf("webhooks[%d].secret", i))
		}
	}
	if dsnHasPassword(c.Store.DSN) {
		keys = append(keys, "store.dsn")
	}
	slices.Sort(keys)
	return keys
}

func dsnHasPassword(dsn string) bool {
	if dsn == "" {
		return false
	}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		_, ok := u.User.Password()
		return ok || u.Query().Get("password") != ""
	}
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "password=") {
			return true
		}
	}
	return false
}

// ReadableSecrets is a warning when the config file at path holds secrets
// (SecretKeys) and group or others may read it; "" when all is well (or
// there is no file). Token files in that state are refused; a config file
// is only warned about, since it also holds everything else.
func ReadableSecrets(path string, c Config) string {
	if path == "" {
		return ""
	}
	keys := c.SecretKeys()
	if len(keys) == 0 {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("config file %s holds secrets (%s) and is readable by group or others (mode %04o): chmod 600 %s",
		path, strings.Join(keys, ", "), fi.Mode().Perm(), path)
}
