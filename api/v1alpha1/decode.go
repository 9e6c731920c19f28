package v1alpha1

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// DecodeError is one problem in one document of a multi-document input.
type DecodeError struct {
	// Document is the 1-based index of the document in its input.
	Document int
	// Path is the field path, empty for problems with the document as a whole.
	Path string
	// Message says what is wrong.
	Message string
}

func (e DecodeError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("document %d: %s", e.Document, e.Message)
	}
	return fmt.Sprintf("document %d: %s: %s", e.Document, e.Path, e.Message)
}

// DecodeErrors is every problem found in an input.
type DecodeErrors []DecodeError

func (es DecodeErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Decode strictly decodes every ServingApp in data: multi-document YAML
// ("---" separated), or one or more JSON objects or arrays of objects. Unknown
// fields, duplicate keys, type mismatches and a wrong apiVersion or kind are
// errors naming the document and field path. Decode neither defaults nor
// validates; Load does both.
func Decode(data []byte) ([]*ServingApp, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var (
		apps []*ServingApp
		errs DecodeErrors
	)
	for i, d := range docs {
		n := i + 1
		app, derrs := decodeOne(n, d)
		errs = append(errs, derrs...)
		if app != nil {
			apps = append(apps, app)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return apps, nil
}

// Load decodes data, applies defaults and validates every object. All
// problems of all documents are returned together, as DecodeErrors.
func Load(data []byte) ([]*ServingApp, error) {
	apps, err := Decode(data)
	if err != nil {
		return nil, err
	}
	var errs DecodeErrors
	for i, a := range apps {
		SetDefaults(a)
		for _, fe := range Validate(a) {
			errs = append(errs, DecodeError{Document: i + 1, Path: fe.Path, Message: fe.Message})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return apps, nil
}

// document is one document's source and the input line it starts on.
type document struct {
	src       []byte
	firstLine int
	json      bool
}

var docSeparator = regexp.MustCompile(`^---(\s.*)?$`)

func splitDocuments(data []byte) ([]document, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		docs, err := splitJSON(trimmed)
		// A YAML document in flow style ({apiVersion: ..., kind: ...}) starts
		// with a brace too: it is YAML, not broken JSON. Only when YAML cannot
		// read it either is the JSON error the one to show.
		if err != nil {
			if ydocs, yerr := splitYAML(data); yerr == nil && readsAsYAML(ydocs) {
				return ydocs, nil
			}
		}
		return docs, err
	}
	return splitYAML(data)
}

// splitYAML splits a YAML stream at its document markers.
func splitYAML(data []byte) ([]document, error) {
	var (
		docs  []document
		cur   bytes.Buffer
		start = 1
		line  = 0
	)
	flush := func(next int) {
		if hasContent(cur.Bytes()) {
			docs = append(docs, document{src: slices.Clone(cur.Bytes()), firstLine: start})
		}
		cur.Reset()
		start = next
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line++
		text := sc.Text()
		if docSeparator.MatchString(text) {
			// "--- {kind: ...}" or "--- |" puts content on the separator
			// line: it starts the next document, it is not dropped.
			rest := strings.TrimSpace(text[3:])
			if rest == "" || rest[0] == '#' {
				flush(line + 1)
				continue
			}
			flush(line)
			cur.WriteString(rest)
			cur.WriteByte('\n')
			continue
		}
		if text == "..." {
			continue
		}
		cur.WriteString(text)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read documents: %w", err)
	}
	flush(line + 1)
	return docs, nil
}

// readsAsYAML reports whether every document parses as YAML.
func readsAsYAML(docs []document) bool {
	for _, doc := range docs {
		var v any
		if yaml.Unmarshal(doc.src, &v) != nil {
			return false
		}
	}
	return true
}

// hasContent reports whether a YAML document holds more than blank lines and comments.
func hasContent(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' {
			return true
		}
	}
	return false
}

func splitJSON(data []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, DecodeErrors{{Document: len(docs) + 1, Message: "invalid JSON: " + err.Error()}}
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
			var items []json.RawMessage
			if err := json.Unmarshal(t, &items); err != nil {
				return nil, DecodeErrors{{Document: len(docs) + 1, Message: "invalid JSON: " + err.Error()}}
			}
			for _, it := range items {
				docs = append(docs, document{src: it, json: true})
			}
			continue
		}
		docs = append(docs, document{src: raw, json: true})
	}
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func decodeOne(n int, d document) (*ServingApp, DecodeErrors) {
	// Duplicate keys are looked for first, on the node tree, because that is
	// where their field path is known; YAMLToJSONStrict would name only a line.
	if dups := duplicateKeys(d); len(dups) > 0 {
		errs := make(DecodeErrors, len(dups))
		for i, fe := range dups {
			errs[i] = DecodeError{Document: n, Path: fe.Path, Message: fe.Message}
		}
		return nil, errs
	}
	// YAMLToJSONStrict rejects duplicate keys too (the backstop for any that
	// duplicateKeys cannot see); JSON is valid YAML, so JSON documents get
	// the same check.
	js, err := yaml.YAMLToJSONStrict(d.src)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		if !d.json {
			msg = yamlLineRE.ReplaceAllStringFunc(msg, func(m string) string {
				k, _ := strconv.Atoi(m[len("line "):])
				return fmt.Sprintf("line %d", k+d.firstLine-1)
			})
		}
		return nil, DecodeErrors{{Document: n, Message: msg}}
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, DecodeErrors{{Document: n, Message: err.Error()}}
	}
	obj, ok := generic.(map[string]any)
	if !ok {
		return nil, DecodeErrors{{Document: n, Message: fmt.Sprintf("expected an object, got %s", describe(generic))}}
	}
	var l errorList
	if v, _ := obj["apiVersion"].(string); v != APIVersion {
		l.add("apiVersion", "must be %q, got %s", APIVersion, describe(obj["apiVersion"]))
	}
	if v, _ := obj["kind"].(string); v != Kind {
		l.add("kind", "must be %q, got %s", Kind, describe(obj["kind"]))
	}
	checkValue(&l, "", reflect.TypeFor[ServingApp](), generic)
	if len(l.errs) > 0 {
		errs := make(DecodeErrors, len(l.errs))
		for i, fe := range l.errs {
			errs[i] = DecodeError{Document: n, Path: fe.Path, Message: fe.Message}
		}
		return nil, errs
	}
	app := new(ServingApp)
	if err := json.Unmarshal(js, app); err != nil {
		// checkValue mirrors encoding/json; reaching here means they disagree.
		return nil, DecodeErrors{{Document: n, Message: err.Error()}}
	}
	return app, nil
}

// duplicateKeys reports every mapping key written twice in d, at any depth,
// with its field path and, for YAML, its line and the first one's. It returns
// nil when yaml.v3 cannot read d: the strict conversion then reports the
// syntax error.
//
// Keys are compared as written ("1" and 1 are the same key), since both
// become the same JSON member name. Keys that only resolve alike in YAML 1.1
// (yes and true) and keys clashing with merged ones ("<<") are left to
// YAMLToJSONStrict, which reports them without a path.
func duplicateKeys(d document) FieldErrors {
	var root yamlv3.Node
	if yamlv3.Unmarshal(d.src, &root) != nil {
		return nil
	}
	var l errorList
	walkKeys(&l, "", &root, d)
	return l.errs
}

func walkKeys(l *errorList, p path, n *yamlv3.Node, d document) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			walkKeys(l, p, c, d)
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			walkKeys(l, p.index(i), c, d)
		}
	case yamlv3.MappingNode:
		first := map[string]*yamlv3.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yamlv3.ScalarNode {
				continue // a complex key has no JSON form; the conversion rejects it
			}
			if k.Tag == "!!merge" {
				// "<<: *base" adds the keys of another mapping. Whether one
				// written here clashes with them is YAMLToJSONStrict's call
				// (it says they do); only the merged mapping itself is
				// checked here.
				walkKeys(l, p, v, d)
				continue
			}
			kp := p.key(k.Value)
			if f, dup := first[k.Value]; dup {
				l.add(kp, "duplicate key %q%s", k.Value, d.lines(k, f))
			} else {
				first[k.Value] = k
			}
			walkKeys(l, kp, v, d)
		}
	}
	// Scalars hold no keys, and an alias's anchor is checked where it is
	// defined (following aliases could loop: "a: &x [*x]").
}

// lines says where a duplicate key and the first one are, as lines of the
// whole input. JSON documents are not placed: their lines are counted from
// the object, not from the input, and would mislead.
func (d document) lines(dup, first *yamlv3.Node) string {
	if d.json {
		return ""
	}
	return fmt.Sprintf(" at line %d (first at line %d)", dup.Line+d.firstLine-1, first.Line+d.firstLine-1)
}

var (
	durationType = reflect.TypeFor[Duration]()
	timeType     = reflect.TypeFor[time.Time]()
)

// checkValue walks a generic JSON value alongside the Go type it will be
// decoded into, reporting unknown fields and type mismatches with full paths.
// encoding/json alone reports neither the path of an unknown field nor more
// than one problem.
func checkValue(l *errorList, p path, t reflect.Type, v any) {
	if v == nil {
		return // null leaves the zero value, as encoding/json does
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		s, ok := v.(string)
		if !ok {
			l.add(p, "expected a duration string such as \"8h\", got %s", describe(v))
		} else if _, err := ParseDuration(s); err != nil {
			l.add(p, "%s", err.Error())
		}
		return
	case timeType:
		s, ok := v.(string)
		if _, err := time.Parse(time.RFC3339, s); !ok || err != nil {
			l.add(p, "expected an RFC 3339 time, got %s", describe(v))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			l.add(p, "expected an object, got %s", describe(v))
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				l.add(p.child(k), "unknown field%s", suggest(k, fields))
				continue
			}
			checkValue(l, p.child(k), f.Type, m[k])
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			l.add(p, "expected an object, got %s", describe(v))
			return
		}
		for _, k := range sortedAnyKeys(m) {
			checkValue(l, p.key(k), t.Elem(), m[k])
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			l.add(p, "expected an array, got %s", describe(v))
			return
		}
		for i, e := range s {
			checkValue(l, p.index(i), t.Elem(), e)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			l.add(p, "expected a string, got %s (quote it)", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			l.add(p, "expected true or false, got %s", describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		num, ok := v.(json.Number)
		if !ok {
			l.add(p, "expected an integer, got %s", describe(v))
			return
		}
		if _, err := strconv.ParseInt(num.String(), 10, t.Bits()); err != nil {
			l.add(p, "expected an integer that fits %d bits, got %s", t.Bits(), num)
		}
	}
}

// jsonFields maps JSON names to struct fields, as encoding/json sees them.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					fields[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
	}
	return fields
}

// suggest names the field the writer most likely meant.
func suggest(k string, fields map[string]reflect.StructField) string {
	best, bestDist := "", 3
	for name := range fields {
		if strings.EqualFold(name, k) {
			return fmt.Sprintf(" (did you mean %q? field names are case-sensitive)", name)
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(name)); d < bestDist || d == bestDist && name < best {
			best, bestDist = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("string %q", x)
	case json.Number:
		return "number " + x.String()
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func sortedAnyKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
