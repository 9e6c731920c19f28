package store

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Selector is a parsed Kubernetes-style label selector. The zero value
// selects everything.
type Selector struct {
	reqs []requirement
}

type operator int

const (
	opEquals operator = iota
	opNotEquals
	opIn
	opNotIn
	opExists
	opDoesNotExist
)

// requirement is one comma-separated term of a selector.
type requirement struct {
	key    string
	op     operator
	values []string // one value for opEquals and opNotEquals
}

var (
	labelNameRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	labelPrefixRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
)

// ParseSelector parses a label selector: comma-separated requirements, all of
// which must hold (AND):
//
//	key=value  key==value   the label is set to value
//	key!=value              the label is absent or set to another value
//	key in (v1,v2)          the label is set to one of the values
//	key notin (v1,v2)       the label is absent or set to none of the values
//	key                     the label is set
//	!key                    the label is absent
//
// Keys are label keys ([prefix/]name); values are label values and may be
// empty for = and !=. Whitespace around tokens is ignored. The empty string
// selects everything. Errors wrap ErrInvalidSelector.
func ParseSelector(s string) (Selector, error) {
	if strings.TrimSpace(s) == "" {
		return Selector{}, nil
	}
	terms, err := splitTerms(s)
	if err != nil {
		return Selector{}, fmt.Errorf("%w %q: %s", ErrInvalidSelector, s, err)
	}
	var sel Selector
	for _, t := range terms {
		r, err := parseRequirement(t)
		if err != nil {
			return Selector{}, fmt.Errorf("%w %q: %s", ErrInvalidSelector, s, err)
		}
		sel.reqs = append(sel.reqs, r)
	}
	return sel, nil
}

// splitTerms splits s at the commas outside parentheses.
func splitTerms(s string) ([]string, error) {
	var (
		terms []string
		depth int
		start int
	)
	for i, c := range s {
		switch c {
		case '(':
			if depth > 0 {
				return nil, fmt.Errorf("nested '(' at offset %d", i)
			}
			depth++
		case ')':
			if depth == 0 {
				return nil, fmt.Errorf("')' without '(' at offset %d", i)
			}
			depth--
		case ',':
			if depth == 0 {
				terms = append(terms, s[start:i])
				start = i + 1
			}
		}
	}
	if depth > 0 {
		return nil, fmt.Errorf("missing ')'")
	}
	terms = append(terms, s[start:])
	for i, t := range terms {
		terms[i] = strings.TrimSpace(t)
		if terms[i] == "" {
			return nil, fmt.Errorf("empty requirement at position %d (a stray comma?)", i+1)
		}
	}
	return terms, nil
}

func parseRequirement(t string) (requirement, error) {
	if rest, ok := strings.CutPrefix(t, "!"); ok {
		key := strings.TrimSpace(rest)
		if err := checkKey(key); err != nil {
			return requirement{}, fmt.Errorf("requirement %q: %s", t, err)
		}
		return requirement{key: key, op: opDoesNotExist}, nil
	}
	end := strings.IndexAny(t, " \t=!(")
	if end < 0 {
		end = len(t)
	}
	key, rest := t[:end], strings.TrimSpace(t[end:])
	if err := checkKey(key); err != nil {
		return requirement{}, fmt.Errorf("requirement %q: %s", t, err)
	}
	r := requirement{key: key}
	switch {
	case rest == "":
		r.op = opExists
		return r, nil
	case strings.HasPrefix(rest, "=="):
		r.op, rest = opEquals, rest[2:]
	case strings.HasPrefix(rest, "!="):
		r.op, rest = opNotEquals, rest[2:]
	case strings.HasPrefix(rest, "="):
		r.op, rest = opEquals, rest[1:]
	case hasWord(rest, "in"):
		r.op, rest = opIn, rest[len("in"):]
	case hasWord(rest, "notin"):
		r.op, rest = opNotIn, rest[len("notin"):]
	default:
		return requirement{}, fmt.Errorf("requirement %q: expected =, ==, !=, in or notin after key %q", t, key)
	}
	rest = strings.TrimSpace(rest)
	if r.op == opEquals || r.op == opNotEquals {
		if err := checkValue(rest); err != nil {
			return requirement{}, fmt.Errorf("requirement %q: %s", t, err)
		}
		r.values = []string{rest}
		return r, nil
	}
	inner, ok := strings.CutPrefix(rest, "(")
	if ok {
		inner, ok = strings.CutSuffix(inner, ")")
	}
	if !ok {
		return requirement{}, fmt.Errorf("requirement %q: the values must be a parenthesized list such as (a,b)", t)
	}
	if strings.TrimSpace(inner) == "" {
		return requirement{}, fmt.Errorf("requirement %q: the value list is empty", t)
	}
	for v := range strings.SplitSeq(inner, ",") {
		v = strings.TrimSpace(v)
		if err := checkValue(v); err != nil {
			return requirement{}, fmt.Errorf("requirement %q: %s", t, err)
		}
		r.values = append(r.values, v)
	}
	return r, nil
}

// hasWord reports whether s starts with word followed by a space or '('.
func hasWord(s, word string) bool {
	rest, ok := strings.CutPrefix(s, word)
	return ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t' || rest[0] == '(')
}

func checkKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	}
	switch {
	case k == "":
		return fmt.Errorf("missing label key")
	case hasPrefix && (len(prefix) > 253 || !labelPrefixRE.MatchString(prefix)):
		return fmt.Errorf("key prefix %q is not a DNS subdomain", prefix)
	case !labelNameRE.MatchString(name):
		return fmt.Errorf("%q is not a label key: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	}
	return nil
}

func checkValue(v string) error {
	if v != "" && !labelNameRE.MatchString(v) {
		return fmt.Errorf("%q is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
	}
	return nil
}

// Empty reports whether the selector selects everything.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, set := labels[r.key]
		var ok bool
		switch r.op {
		case opEquals, opIn:
			ok = set && slices.Contains(r.values, v)
		case opNotEquals, opNotIn:
			ok = !set || !slices.Contains(r.values, v)
		case opExists:
			ok = set
		case opDoesNotExist:
			ok = !set
		}
		if !ok {
			return false
		}
	}
	return true
}
