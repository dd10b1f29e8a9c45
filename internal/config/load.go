package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a configuration error. Key is the full dotted key path
// ("health.idle_timeout", "agent.env.FOO", "agent.args[2]"); it is empty for
// errors that concern the file as a whole (unreadable file, YAML syntax).
// Line is the 1-based line in the YAML input, or 0 when unknown.
type Error struct {
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// unknownKeyError formats as "config: unknown key health.idel_timeout (line 3)".
type unknownKeyError struct{ e *Error }

func (u *unknownKeyError) Error() string {
	s := "config: unknown key " + u.e.Key
	if u.e.Line > 0 {
		s += fmt.Sprintf(" (line %d)", u.e.Line)
	}
	return s
}

// Unwrap lets errors.As find the *Error.
func (u *unknownKeyError) Unwrap() error { return u.e }

// defaultStateDir is Default().StateDir; when the input does not set
// state_dir, $XDG_STATE_HOME/dispatch replaces it if $XDG_STATE_HOME is set.
const defaultStateDir = "~/.local/state/dispatch"

// maxInputBytes bounds the size of a configuration file.
const maxInputBytes = 1 << 20

// Load reads the YAML file at path (path "" = no file: defaults only),
// applies it over Default(), resolves state_dir ($XDG_STATE_HOME), expands
// "~" and makes paths absolute, validates, and returns the config.
func Load(path string) (Config, error) {
	if path == "" {
		return Parse(nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	if len(data) > maxInputBytes {
		return Config{}, fmt.Errorf("config: %s: file larger than %d bytes", path, maxInputBytes)
	}
	cfg, err := Parse(data)
	if err != nil {
		// Errors about the file as a whole (YAML syntax) name the file;
		// key errors name the key.
		if e, ok := err.(*Error); ok && e.Key == "" {
			return Config{}, &Error{Line: e.Line, Msg: path + ": " + e.Msg}
		}
		return Config{}, err
	}
	return cfg, nil
}

// Parse is Load without the file: data is the YAML text (nil or empty means
// defaults only).
func Parse(data []byte) (Config, error) {
	if len(data) > maxInputBytes {
		return Config{}, &Error{Msg: fmt.Sprintf("input larger than %d bytes", maxInputBytes)}
	}
	cfg := Default()
	d := &decoder{set: map[string]bool{}}
	if err := d.decodeDocument(data, &cfg); err != nil {
		return Config{}, err
	}
	if !d.set["sessions.trusted"] {
		// The default follows a renamed master session.
		cfg.Sessions.Trusted = []string{cfg.Sessions.Master}
	}
	if err := cfg.resolvePaths(d.set["state_dir"]); err != nil {
		return Config{}, err
	}
	cfg.webhookDefaults()
	cfg.channelDefaults()
	if err := cfg.resolveChannelPaths(); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// resolvePaths applies the $XDG_STATE_HOME default, expands "~" and makes
// the path keys absolute.
func (c *Config) resolvePaths(stateDirSet bool) error {
	if !stateDirSet && c.StateDir == defaultStateDir {
		if x := os.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
			c.StateDir = filepath.Join(x, "dispatch")
		}
	}
	for _, p := range []struct {
		key string
		val *string
	}{
		{"state_dir", &c.StateDir},
		{"agent.dir", &c.Agent.Dir},
		{"api.socket", &c.API.Socket},
		{"api.token_file", &c.API.TokenFile},
		{"api.metrics_token_file", &c.API.MetricsTokenFile},
		{"api.tls_cert_file", &c.API.TLSCertFile},
		{"api.tls_key_file", &c.API.TLSKeyFile},
	} {
		if *p.val == "" {
			continue
		}
		v, err := expandHome(*p.val)
		if err != nil {
			return &Error{Key: p.key, Msg: err.Error()}
		}
		if v, err = filepath.Abs(v); err != nil {
			return &Error{Key: p.key, Msg: err.Error()}
		}
		*p.val = v
	}
	for i, w := range c.Agent.Sandbox.Writable {
		key := fmt.Sprintf("agent.sandbox.writable[%d]", i)
		v, err := expandHome(w)
		if err != nil {
			return &Error{Key: key, Msg: err.Error()}
		}
		if !filepath.IsAbs(v) {
			return &Error{Key: key, Msg: fmt.Sprintf("must be an absolute path (or start with ~/), got %q", w)}
		}
		c.Agent.Sandbox.Writable[i] = filepath.Clean(v)
	}
	// The executable may be given as ~/bin/claude; a bare name is looked up
	// in $PATH by the agent and is left alone.
	if strings.HasPrefix(c.Agent.Command, "~/") {
		v, err := expandHome(c.Agent.Command)
		if err != nil {
			return &Error{Key: "agent.command", Msg: err.Error()}
		}
		c.Agent.Command = v
	}
	return nil
}

// expandHome replaces a leading "~" or "~/" with the home directory. Other
// forms ("~user", "a/~") are left as they are.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("cannot expand ~ in %q: home directory unknown ($HOME not set)", p)
	}
	return filepath.Join(home, p[1:]), nil
}

// SocketPath is the control socket: api.socket, or state_dir/dispatch.sock.
func (c Config) SocketPath() string {
	if c.API.Socket != "" {
		return c.API.Socket
	}
	return filepath.Join(c.StateDir, "dispatch.sock")
}

// DBPath is the database file: state_dir/dispatch.db.
func (c Config) DBPath() string { return filepath.Join(c.StateDir, "dispatch.db") }

// LockPath is the single-daemon lock file: state_dir/dispatch.lock.
func (c Config) LockPath() string { return filepath.Join(c.StateDir, "dispatch.lock") }

// WorkDir holds the agents' working directories (one per chat below it):
// agent.dir, or state_dir/work.
func (c Config) WorkDir() string {
	if c.Agent.Dir != "" {
		return c.Agent.Dir
	}
	return filepath.Join(c.StateDir, "work")
}

// ---- YAML decoding -------------------------------------------------------

// decodeBudget bounds the nodes visited while decoding, so that merge keys
// (<<) referring to each other cannot make decoding exponential.
const decodeBudget = 100000

// maxAliasDepth bounds alias/merge chains.
const maxAliasDepth = 100

type decoder struct {
	set    map[string]bool // key paths set to a non-null value
	budget int
}

var durationType = reflect.TypeFor[time.Duration]()

func (d *decoder) decodeDocument(data []byte, cfg *Config) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if err == io.EOF {
			return nil
		}
		return &Error{Msg: err.Error()}
	}
	var extra yaml.Node
	if err := safeDecode(dec, &extra); err != io.EOF {
		if err != nil {
			return &Error{Msg: err.Error()}
		}
		return &Error{Line: extra.Line, Msg: "more than one YAML document in the input"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	return d.decode(root, reflect.ValueOf(cfg).Elem(), "", 0)
}

// safeDecode runs the third-party YAML parser, turning a panic on a
// malformed input into an error: a bad file must never take the daemon down.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	return dec.Decode(n)
}

// resolve follows aliases.
func resolve(n *yaml.Node) (*yaml.Node, error) {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > maxAliasDepth {
			return nil, errors.New("alias chain too long")
		}
		n = n.Alias
	}
	if n == nil {
		return nil, errors.New("dangling alias")
	}
	return n, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected YAML node"
}

func typeErr(key string, n *yaml.Node, want string) error {
	k := key
	if k == "" {
		k = "top level"
	}
	return &Error{Key: k, Line: n.Line, Msg: fmt.Sprintf("expected %s, got %s", want, describe(n))}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

type pair struct{ key, val *yaml.Node }

// pairs returns the key/value pairs of a mapping with merge keys (<<)
// flattened in: explicit keys win over merged ones, earlier merge sources
// over later ones. A duplicate explicit key is an error.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) ([]pair, error) {
	if depth > maxAliasDepth {
		return nil, &Error{Key: path, Line: n.Line, Msg: "merge keys nested too deeply"}
	}
	var out, merged []pair
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if d.budget++; d.budget > decodeBudget {
			return nil, &Error{Line: n.Line, Msg: "document too complex"}
		}
		k, v := n.Content[i], n.Content[i+1]
		k, err := resolve(k)
		if err != nil {
			return nil, &Error{Key: path, Line: n.Line, Msg: err.Error()}
		}
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			srcs, err := d.mergeSources(v, path, depth)
			if err != nil {
				return nil, err
			}
			merged = append(merged, srcs...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return nil, typeErr(path, k, "a string key")
		}
		if seen[k.Value] {
			return nil, &Error{Key: join(path, k.Value), Line: k.Line, Msg: "duplicate key"}
		}
		seen[k.Value] = true
		out = append(out, pair{k, v})
	}
	for _, p := range merged {
		if !seen[p.key.Value] {
			seen[p.key.Value] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func (d *decoder) mergeSources(v *yaml.Node, path string, depth int) ([]pair, error) {
	v, err := resolve(v)
	if err != nil {
		return nil, &Error{Key: path, Msg: err.Error()}
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.pairs(v, path, depth+1)
	case yaml.SequenceNode:
		var out []pair
		for _, e := range v.Content {
			e, err := resolve(e)
			if err != nil {
				return nil, &Error{Key: path, Msg: err.Error()}
			}
			if e.Kind != yaml.MappingNode {
				return nil, typeErr(path+".<<", e, "a mapping to merge")
			}
			ps, err := d.pairs(e, path, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		}
		return out, nil
	}
	return nil, typeErr(path+".<<", v, "a mapping to merge")
}

// decode stores node n into v; path is n's key path. A null leaves v as it
// is (the default).
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if d.budget++; d.budget > decodeBudget {
		return &Error{Line: n.Line, Msg: "document too complex"}
	}
	n, err := resolve(n)
	if err != nil {
		return &Error{Key: path, Msg: err.Error()}
	}
	if isNull(n) {
		return nil
	}
	if path != "" {
		d.set[path] = true
	}
	if v.Type() == durationType {
		return decodeDuration(n, v, path)
	}
	if v.Type() == sizeType {
		return decodeSize(n, v, path)
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return typeErr(path, n, "a mapping")
		}
		ps, err := d.pairs(n, path, depth)
		if err != nil {
			return err
		}
		fields := structFields(v.Type())
		for _, p := range ps {
			idx, ok := fields[p.key.Value]
			if !ok {
				return &unknownKeyError{&Error{Key: join(path, p.key.Value), Line: p.key.Line, Msg: "unknown key"}}
			}
			if err := d.decode(p.val, v.Field(idx), join(path, p.key.Value), depth); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return typeErr(path, n, "a string")
		}
		v.SetString(n.Value)
		return nil
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return typeErr(path, n, "an integer")
		}
		var i int
		if err := n.Decode(&i); err != nil {
			return &Error{Key: path, Line: n.Line, Msg: fmt.Sprintf("invalid integer %q", n.Value)}
		}
		v.SetInt(int64(i))
		return nil
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			return d.decodeStructList(n, v, path, depth)
		}
		if v.Type().Elem().Kind() != reflect.String {
			break
		}
		if n.Kind != yaml.SequenceNode {
			return typeErr(path, n, "a list of strings")
		}
		out := make([]string, 0, len(n.Content))
		for i, e := range n.Content {
			s, err := d.scalarString(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		v.Set(reflect.ValueOf(out))
		return nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			break
		}
		if n.Kind != yaml.MappingNode {
			return typeErr(path, n, "a mapping of strings")
		}
		ps, err := d.pairs(n, path, depth)
		if err != nil {
			return err
		}
		out := make(map[string]string, len(ps))
		for _, p := range ps {
			s, err := d.scalarString(p.val, join(path, p.key.Value))
			if err != nil {
				return err
			}
			out[p.key.Value] = s
		}
		v.Set(reflect.ValueOf(out))
		return nil
	}
	// Only reachable if a field of an unsupported type is added to Config.
	return &Error{Key: path, Line: n.Line, Msg: fmt.Sprintf("unsupported field type %s", v.Type())}
}

// decodeStructList decodes a list of mappings (webhooks) into a slice of
// structs; each element starts from the zero value, its key path is
// "path[i]".
func (d *decoder) decodeStructList(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.SequenceNode {
		return typeErr(path, n, "a list of mappings")
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		if err := d.decode(e, out.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
			return err
		}
	}
	v.Set(out)
	return nil
}

// scalarString decodes a list element or map value; null is "".
func (d *decoder) scalarString(n *yaml.Node, path string) (string, error) {
	if d.budget++; d.budget > decodeBudget {
		return "", &Error{Line: n.Line, Msg: "document too complex"}
	}
	n, err := resolve(n)
	if err != nil {
		return "", &Error{Key: path, Msg: err.Error()}
	}
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", typeErr(path, n, "a string")
	}
	return n.Value, nil
}

// decodeDuration accepts Go duration syntax ("300ms", "5m", "2h") or a bare 0.
func decodeDuration(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(path, n, `a duration such as "5m"`)
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err == nil && i == 0 {
			v.SetInt(0)
			return nil
		}
		return &Error{Key: path, Msg: fmt.Sprintf("invalid duration %q (a duration needs a unit, e.g. \"%ss\")", n.Value, n.Value)}
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		return &Error{Key: path, Msg: fmt.Sprintf("invalid duration %q", n.Value)}
	}
	v.SetInt(int64(dur))
	return nil
}

// structFields maps yaml tag names to field indexes.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = i
	}
	return m
}
