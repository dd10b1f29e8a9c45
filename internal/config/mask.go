package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Secrets are masked in what `config show` prints wherever they may sit:
//
//   - a password in store.dsn, in URL form (postgres://user:pw@host/db,
//     ?password=…) or key=value form (password=…);
//   - in a URL (webhook URLs, and agent.env values that are URLs): the
//     whole user-info part (user:password@, or a token given as the user),
//     the value of every query parameter whose name looks secret (token,
//     key, secret, password, sig, auth, credential, code …), and path
//     segments that look like generated tokens (24 or more letters,
//     digits, '-' or '_', mixing letters and digits: the secret part of
//     Slack- or Discord-style webhook URLs);
//   - agent.env values whose names look secret (…KEY, …TOKEN, …SECRET,
//     …PASSWORD, …AUTH, …CREDENTIAL, …COOKIE), and values that start like
//     a well-known API token (sk-, ghp_, github_pat_, xoxb-, AKIA, whsec_ …)
//     whatever their names.

// secretParam matches query parameter (and DSN key) names whose values
// are secrets.
var secretParam = regexp.MustCompile(`(?i)(token|key|secret|passw|pwd|sig|auth|credential|cookie|session|code)`)

// tokenSegment is a path segment that looks like a generated token.
var tokenSegment = regexp.MustCompile(`^[A-Za-z0-9_-]{24,}$`)

// tokenPrefix matches values that start like well-known API tokens.
var tokenPrefix = regexp.MustCompile(`^(sk-|sk_|rk_|pk_live|ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|xox[abposr]-|AKIA|ASIA|whsec_|AIza|ya29\.|npm_|pypi-)`)

// dsnPassword matches the password of a key=value connection string.
var dsnPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)`)

// placeholder stands in for a masked part while a URL is re-encoded (the
// parentheses of Masked would be escaped).
const placeholder = "MASKEDXSECRETXPLACEHOLDER"

// MaskDSN masks the password of a PostgreSQL connection string, in URL or
// key=value form.
func MaskDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.Contains(dsn, "://") {
		return maskURL(dsn, false)
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}"+Masked)
}

// MaskURL masks the credentials, secret-looking query parameters and
// token-like path segments of a URL (a webhook's).
func MaskURL(raw string) string { return maskURL(raw, true) }

// maskURL masks raw's secrets; allUserinfo masks the user name too (a
// webhook's user name may be its token), else only the password is.
func maskURL(raw string, allUserinfo bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Masked // cannot tell which part is secret
	}
	if u.User != nil {
		if _, has := u.User.Password(); has || allUserinfo {
			if allUserinfo {
				u.User = url.User(placeholder)
			} else {
				u.User = url.UserPassword(u.User.Username(), placeholder)
			}
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			if secretParam.MatchString(k) {
				for i := range vs {
					vs[i] = placeholder
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	if u.Path != "" {
		segs := strings.Split(u.Path, "/")
		changed := false
		for i, s := range segs {
			if looksLikeToken(s) {
				segs[i] = placeholder
				changed = true
			}
		}
		if changed {
			u.Path, u.RawPath = strings.Join(segs, "/"), ""
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return strings.ReplaceAll(u.String(), placeholder, Masked)
}

func looksLikeToken(s string) bool {
	return tokenSegment.MatchString(s) &&
		strings.ContainsAny(s, "0123456789") &&
		strings.ContainsAny(strings.ToLower(s), "abcdefghijklmnopqrstuvwxyz")
}

// maskEnv is how config show prints agent.env's value v of variable k.
func maskEnv(k, v string) string {
	switch {
	case v == "":
		return v
	case secretEnv.MatchString(k), tokenPrefix.MatchString(v):
		return Masked
	case strings.Contains(v, "://"):
		if _, err := url.Parse(v); err == nil {
			return MaskURL(v)
		}
	}
	return v
}
