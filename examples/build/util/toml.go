package util

// A TOML subset, hand-written because the build has no network for Go
// modules (no BurntSushi/toml): `key = value` lines, `[table]` headers
// (keys become "table.key"), `#` comments, and values that are basic
// strings ("..." with \" \\ \n \t escapes), integers, floats or booleans.
// Arrays, inline tables, multi-line and literal strings are refused.

import (
	"fmt"
	"strings"
)

// ParseTOML returns the settings of a TOML document, values as strings.
func ParseTOML(text string) (Config, error) {
	cfg := Config{}
	table := ""
	for n, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(stripComment(raw))
		if line == "" {
			continue
		}
		lineNo := n + 1
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || strings.HasPrefix(line, "[[") {
				return nil, fmt.Errorf("line %d: only [table] headers are supported", lineNo)
			}
			table = strings.TrimSpace(line[1:len(line)-1]) + "."
			continue
		}
		eq := strings.Index(line, "=")
		if eq <= 0 {
			return nil, fmt.Errorf("line %d: want key = value", lineNo)
		}
		key := strings.TrimSpace(line[:eq])
		value, err := parseValue(strings.TrimSpace(line[eq+1:]))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", lineNo, key, err)
		}
		if _, dup := cfg[table+key]; dup {
			return nil, fmt.Errorf("line %d: %s is set twice", lineNo, key)
		}
		cfg[table+key] = value
	}
	return cfg, nil
}

// stripComment drops a `#` comment that is not inside a string.
func stripComment(line string) string {
	inString, escaped := false, false
	for i, c := range line {
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inString:
			escaped = true
		case c == '"':
			inString = !inString
		case c == '#' && !inString:
			return line[:i]
		}
	}
	return line
}

func parseValue(v string) (string, error) {
	if strings.HasPrefix(v, `"`) {
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return "", fmt.Errorf("unterminated string")
		}
		var b strings.Builder
		body := v[1 : len(v)-1]
		for i := 0; i < len(body); i++ {
			c := body[i]
			if c == '"' {
				return "", fmt.Errorf("unescaped quote in string")
			}
			if c != '\\' {
				b.WriteByte(c)
				continue
			}
			i++
			if i == len(body) {
				return "", fmt.Errorf("string ends in a backslash")
			}
			switch body[i] {
			case '"', '\\':
				b.WriteByte(body[i])
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return "", fmt.Errorf("unsupported escape \\%c", body[i])
			}
		}
		return b.String(), nil
	}
	if v == "true" || v == "false" {
		return v, nil
	}
	if v == "" || strings.ContainsAny(v, "[{'\" ") {
		return "", fmt.Errorf("unsupported value %q (strings, numbers and booleans only)", v)
	}
	for _, c := range v {
		if !strings.ContainsRune("0123456789+-._eE", c) {
			return "", fmt.Errorf("unsupported value %q (strings, numbers and booleans only)", v)
		}
	}
	return v, nil
}
