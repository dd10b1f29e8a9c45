package config

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Masked is what a secret shows as in `dispatch config show`.
const Masked = "(masked)"

// secretEnv matches agent.env names whose values are secrets.
var secretEnv = regexp.MustCompile(`(?i)(key|token|secret|passw|auth|credential|cookie)`)

// Keys lists every key the loader knows, as dotted paths in the order of
// the Config struct: "health.check_interval", "agent.env", and
// "webhooks[].url" for the keys of a list's entries. It is derived from the
// struct the loader decodes into, so it cannot drift from it.
func Keys() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			key := join(prefix, name)
			ft := f.Type
			switch {
			case ft == durationType:
				out = append(out, key)
			case ft.Kind() == reflect.Struct:
				walk(ft, key)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				out = append(out, key)
				walk(ft.Elem(), key+"[]")
			default:
				out = append(out, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

// ShowYAML is the configuration as YAML, every key in the loader's order,
// durations in Go syntax, with every secret masked (mask.go): the
// password in store.dsn, webhook secrets, the credentials, secret query
// parameters and token-like path segments of webhook URLs, and agent.env
// values that look secret by name or by value. Token files are named,
// never read.
func (c Config) ShowYAML() ([]byte, error) {
	m := c
	m.Store.DSN = MaskDSN(c.Store.DSN)
	m.Webhooks = slices.Clone(c.Webhooks)
	for i := range m.Webhooks {
		if m.Webhooks[i].Secret != "" {
			m.Webhooks[i].Secret = Masked
		}
		if m.Webhooks[i].URL != "" {
			m.Webhooks[i].URL = MaskURL(m.Webhooks[i].URL)
		}
	}
	if len(c.Agent.Env) > 0 {
		m.Agent.Env = make(map[string]string, len(c.Agent.Env))
		for k, v := range c.Agent.Env {
			m.Agent.Env[k] = maskEnv(k, v)
		}
	}
	n, err := toNode(reflect.ValueOf(m))
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// toNode turns a config value into a YAML node the way the loader reads it
// back (durations as "5m0s", maps with sorted keys).
func toNode(v reflect.Value) (*yaml.Node, error) {
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	if v.Type() == durationType {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(v.Interface())}, nil
	}
	if v.Type() == sizeType {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: v.Interface().(Size).String()}, nil
	}
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			name := yamlName(v.Type().Field(i))
			if name == "" {
				continue
			}
			val, err := toNode(v.Field(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, str(name), val)
		}
		return n, nil
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Type().Elem().Kind() != reflect.Struct {
			n.Style = yaml.FlowStyle
		}
		for i := range v.Len() {
			e, err := toNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, e)
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			n.Content = append(n.Content, str(k.String()), str(v.MapIndex(k).String()))
		}
		if len(keys) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n, nil
	case reflect.String:
		return str(v.String()), nil
	case reflect.Int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}, nil
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}, nil
	}
	return nil, fmt.Errorf("config: cannot show a field of type %s", v.Type())
}
