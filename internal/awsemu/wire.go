package awsemu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file holds the wire codecs shared by the emulated services. The
// emulators keep their state in the aws-sdk-go-v2 types themselves
// (types.Service, types.Rule, ...), whose Go field names equal the wire member
// names (ECS: with the first letter lowered), so one reflective encoder per
// protocol serves every operation.

var (
	timeType  = reflect.TypeFor[time.Time]()
	bytesType = reflect.TypeFor[[]byte]()
)

// skipField reports whether a struct field never goes on the wire: unexported
// fields, SDK result metadata, and unions/documents (interface fields) that the
// emulators never set.
func skipField(f reflect.StructField) bool {
	return !f.IsExported() || f.Name == "ResultMetadata" || f.Type.Kind() == reflect.Interface
}

// ---- AWS JSON 1.1 (ECS, Secrets Manager) ----

// encodeJSON renders v as AWS JSON: nil pointers, slices and maps and empty
// enum strings are omitted, timestamps are epoch seconds, blobs base64. With
// lowerFirst the member names are the Go field names with the first letter
// lowered (ECS); otherwise they are the Go field names (Secrets Manager).
func encodeJSON(v any, lowerFirst bool) []byte {
	var b bytes.Buffer
	writeJSONValue(&b, reflect.ValueOf(v), lowerFirst)
	return b.Bytes()
}

func writeJSONValue(b *bytes.Buffer, v reflect.Value, lowerFirst bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("null")
			return
		}
		writeJSONValue(b, v.Elem(), lowerFirst)
	case reflect.Struct:
		if v.Type() == timeType {
			t := v.Interface().(time.Time)
			b.WriteString(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64))
			return
		}
		b.WriteByte('{')
		first := true
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if skipField(f) {
				continue
			}
			fv := v.Field(i)
			if omitField(fv) {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			name := f.Name
			if lowerFirst {
				name = strings.ToLower(name[:1]) + name[1:]
			}
			writeJSONString(b, name)
			b.WriteByte(':')
			writeJSONValue(b, fv, lowerFirst)
		}
		b.WriteByte('}')
	case reflect.Slice:
		if v.Type() == bytesType {
			writeJSONString(b, base64.StdEncoding.EncodeToString(v.Bytes()))
			return
		}
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONValue(b, v.Index(i), lowerFirst)
		}
		b.WriteByte(']')
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k.String())
			b.WriteByte(':')
			writeJSONValue(b, v.MapIndex(k), lowerFirst)
		}
		b.WriteByte('}')
	case reflect.String:
		writeJSONString(b, v.String())
	case reflect.Bool:
		b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, 64))
	default:
		b.WriteString("null")
	}
}

// omitField reports whether a field value is absent on the wire.
func omitField(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return v.IsNil()
	case reflect.String:
		return v.Len() == 0
	case reflect.Struct:
		return v.Type() == timeType && v.Interface().(time.Time).IsZero()
	}
	return false
}

func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// decodeJSON decodes an AWS JSON request body into an SDK input struct.
// encoding/json matches member names case-insensitively, which covers both
// ECS's lowerCamel and Secrets Manager's PascalCase members.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return json.Unmarshal(body, v)
}

// ---- AWS Query (ELBv2) ----

// queryNode is one segment of a Query protocol key path such as
// Conditions.member.1.HostHeaderConfig.Values.member.2.
type queryNode struct {
	value    string
	hasValue bool
	children map[string]*queryNode
}

func (n *queryNode) child(name string) *queryNode {
	if n.children == nil {
		n.children = map[string]*queryNode{}
	}
	c, ok := n.children[name]
	if !ok {
		c = &queryNode{}
		n.children[name] = c
	}
	return c
}

// decodeQuery fills an SDK input struct from Query protocol form values:
// members by Go field name, lists as Name.member.N, an empty list as "Name=".
func decodeQuery(form url.Values, v any) error {
	root := &queryNode{}
	for key, vals := range form {
		if key == "Action" || key == "Version" || len(vals) == 0 {
			continue
		}
		n := root
		for seg := range strings.SplitSeq(key, ".") {
			n = n.child(seg)
		}
		n.value, n.hasValue = vals[0], true
	}
	return fillQuery(reflect.ValueOf(v).Elem(), root, "")
}

func fillQuery(v reflect.Value, n *queryNode, path string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return fillQuery(v.Elem(), n, path)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if skipField(f) {
				continue
			}
			c, ok := n.children[f.Name]
			if !ok {
				continue
			}
			if err := fillQuery(v.Field(i), c, joinPath(path, f.Name)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if v.Type() == bytesType {
			raw, err := base64.StdEncoding.DecodeString(n.value)
			if err != nil {
				return fmt.Errorf("%s: invalid base64", path)
			}
			v.SetBytes(raw)
			return nil
		}
		members := n.children["member"]
		if members == nil {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return nil
		}
		idx := make([]int, 0, len(members.children))
		for k := range members.children {
			i, err := strconv.Atoi(k)
			if err != nil || i < 1 {
				return fmt.Errorf("%s.member.%s: invalid list index", path, k)
			}
			idx = append(idx, i)
		}
		sort.Ints(idx)
		s := reflect.MakeSlice(v.Type(), len(idx), len(idx))
		for j, i := range idx {
			if err := fillQuery(s.Index(j), members.children[strconv.Itoa(i)], fmt.Sprintf("%s.member.%d", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.String:
		v.SetString(n.value)
		return nil
	case reflect.Bool:
		b, err := strconv.ParseBool(n.value)
		if err != nil {
			return fmt.Errorf("%s: invalid boolean %q", path, n.value)
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.value, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%s: invalid integer %q", path, n.value)
		}
		v.SetInt(i)
		return nil
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(n.value, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%s: invalid number %q", path, n.value)
		}
		v.SetFloat(f)
		return nil
	}
	return nil
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// encodeQueryResult renders the members of an SDK output struct as AWS Query
// XML elements, the content of <OpResult>.
func encodeQueryResult(out any) []byte {
	var b bytes.Buffer
	if out != nil {
		writeXMLFields(&b, reflect.ValueOf(out))
	}
	return b.Bytes()
}

// wrapQueryResponse wraps an encoded result as an AWS Query response:
// <OpResponse><OpResult>...</OpResult><ResponseMetadata/></OpResponse>.
func wrapQueryResponse(op, xmlns, requestID string, result []byte) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, "<%sResponse xmlns=%q><%sResult>", op, xmlns, op)
	b.Write(result)
	fmt.Fprintf(&b, "</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>", op, requestID, op)
	return b.Bytes()
}

// writeXMLFields writes the members of the struct behind v.
func writeXMLFields(b *bytes.Buffer, v reflect.Value) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if skipField(f) {
			continue
		}
		fv := v.Field(i)
		if omitField(fv) {
			continue
		}
		writeXMLElement(b, f.Name, fv)
	}
}

func writeXMLElement(b *bytes.Buffer, name string, v reflect.Value) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	b.WriteString("<" + name + ">")
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			b.WriteString(v.Interface().(time.Time).UTC().Format("2006-01-02T15:04:05.000Z"))
		} else {
			writeXMLFields(b, v)
		}
	case reflect.Slice:
		if v.Type() == bytesType {
			b.WriteString(base64.StdEncoding.EncodeToString(v.Bytes()))
			break
		}
		for i := range v.Len() {
			writeXMLElement(b, "member", v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			b.WriteString("<entry>")
			writeXMLElement(b, "key", k)
			writeXMLElement(b, "value", v.MapIndex(k))
			b.WriteString("</entry>")
		}
	case reflect.String:
		_ = xml.EscapeText(b, []byte(v.String()))
	case reflect.Bool:
		b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Float32, reflect.Float64:
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, 64))
	}
	b.WriteString("</" + name + ">")
}

// ---- errors ----

// apiError is an AWS error response: the error code the SDK maps to a typed
// error, the message, and the HTTP status.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// clientErr builds a 400 error with a formatted message.
func clientErr(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

// protocol is the wire protocol of a request.
type protocol int

const (
	// protoREST is anything that is neither AWS JSON nor AWS Query.
	protoREST protocol = iota
	// protoJSON is AWS JSON with a lower-case "message" error member (ECS).
	protoJSON
	// protoJSONPascal is AWS JSON with a "Message" error member (Secrets Manager).
	protoJSONPascal
	// protoQuery is AWS Query with XML responses (ELBv2).
	protoQuery
)

// writeError writes e in the protocol's error shape: AWS JSON carries the
// code in __type (and the X-Amzn-ErrorType header, as AWS does), AWS Query in
// <ErrorResponse><Error><Code>.
func writeError(w http.ResponseWriter, p protocol, e *apiError, requestID string) {
	switch p {
	case protoQuery:
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("X-Amzn-RequestId", requestID)
		w.WriteHeader(e.Status)
		typ := "Sender"
		if e.Status >= 500 {
			typ = "Receiver"
		}
		var b bytes.Buffer
		b.WriteString(xml.Header)
		fmt.Fprintf(&b, `<ErrorResponse xmlns=%q><Error><Type>%s</Type><Code>`, elbv2XMLNS, typ)
		_ = xml.EscapeText(&b, []byte(e.Code))
		b.WriteString("</Code><Message>")
		_ = xml.EscapeText(&b, []byte(e.Message))
		fmt.Fprintf(&b, "</Message></Error><RequestId>%s</RequestId></ErrorResponse>", requestID)
		_, _ = w.Write(b.Bytes())
	default:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-RequestId", requestID)
		w.Header().Set("X-Amzn-ErrorType", e.Code)
		w.WriteHeader(e.Status)
		msgKey := "message"
		if p == protoJSONPascal {
			msgKey = "Message"
		}
		body, _ := json.Marshal(map[string]string{"__type": e.Code, msgKey: e.Message})
		_, _ = w.Write(body)
	}
}

// writeJSONResponse writes a 200 AWS JSON response.
func writeJSONResponse(w http.ResponseWriter, body []byte, requestID string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", requestID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
