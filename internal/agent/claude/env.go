package claude

import (
	"maps"
	"slices"
	"strings"
)

// DefaultEnvAllow are the variables of the daemon's environment every agent
// gets; a name ending in * is a prefix. Nothing else passes unless the
// operator names it (agent.env_passthrough) or sets it (agent.env): the
// daemon's environment may hold cloud keys, an SSH agent socket and the
// like, which an agent acting on a stranger's message must not reach.
var DefaultEnvAllow = []string{"PATH", "HOME", "LANG", "LC_*", "TERM", "TZ", "USER", "TMPDIR"}

// Environ builds an agent's environment: the variables of base that
// DefaultEnvAllow or passthrough allow (CLAUDECODE never: set inside a
// Claude Code session, it makes the CLI refuse to start as a nested
// session), then the overlays in order, later ones winning. Keys are
// sorted so the result is deterministic.
func Environ(base, passthrough []string, overlays ...map[string]string) []string {
	merged := map[string]string{}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if k != "CLAUDECODE" && (allowed(k, DefaultEnvAllow) || allowed(k, passthrough)) {
			merged[k] = v
		}
	}
	for _, o := range overlays {
		maps.Copy(merged, o)
	}
	env := make([]string, 0, len(merged))
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		env = append(env, k+"="+merged[k])
	}
	return env
}

// allowed reports whether name matches one of the patterns (a name, or a
// prefix ending in *).
func allowed(name string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}
