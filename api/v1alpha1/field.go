package v1alpha1

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field.
type FieldError struct {
	// Path is the field path, e.g. "spec.allowlist[2]".
	Path string
	// Message says what is wrong and, where it can, what to write instead.
	Message string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// FieldErrors is every problem found in one object. It is an error when not empty.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// path builds field paths without string juggling at every call site.
type path string

func (p path) child(name string) path {
	if p == "" {
		return path(name)
	}
	return path(string(p) + "." + name)
}

func (p path) index(i int) path { return path(fmt.Sprintf("%s[%d]", p, i)) }

// key addresses a map entry; keys that are not plain identifiers are quoted.
func (p path) key(k string) path {
	for _, r := range k {
		if !(r == '_' || r == '-' || r == '.' || r == '/' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return path(fmt.Sprintf("%s[%q]", p, k))
		}
	}
	return p.child(k)
}

type errorList struct{ errs FieldErrors }

func (l *errorList) add(p path, format string, args ...any) {
	l.errs = append(l.errs, FieldError{Path: string(p), Message: fmt.Sprintf(format, args...)})
}
