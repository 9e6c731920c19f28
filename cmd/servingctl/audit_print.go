package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/servingapp/servingapp/api/audit"
)

// auditRowFormat lays out table rows with fixed widths, so a followed tail
// can print each row the moment it arrives; longer values push the row on.
const auditRowFormat = "%-24s  %-28s  %-20s  %-26s  %-15s  %-7s  %s\n"

// auditWriter prints audit records as a table, CloudEvents JSON lines
// (json) or OCSF JSON lines (ocsf). It flushes the first record at once,
// then buffers while more records are waiting and flushes when the reader
// has caught up.
type auditWriter struct {
	w       *bufio.Writer
	format  string
	header  bool
	flushed bool
}

func newAuditWriter(w io.Writer, format string) *auditWriter {
	return &auditWriter{w: bufio.NewWriterSize(w, 64<<10), format: format}
}

func (a *auditWriter) write(r auditRecord, more bool) error {
	switch a.format {
	case "json":
		a.w.Write(r.raw)
		a.w.WriteByte('\n')
	case "ocsf":
		a.w.Write(r.env.Data)
		a.w.WriteByte('\n')
	default:
		if !a.header {
			fmt.Fprintf(a.w, auditRowFormat, "TIME", "APP", "TYPE", "USER", "SOURCE", "STATUS", "DETAIL")
			a.header = true
		}
		ev := r.event
		app := ev.App()
		src := ""
		if ev.SrcEndpoint != nil {
			src = ev.SrcEndpoint.IP
		}
		fmt.Fprintf(a.w, auditRowFormat,
			time.UnixMilli(ev.Time).UTC().Format("2006-01-02T15:04:05.000Z"),
			app.Namespace+"/"+app.Name, r.typ, orDash(principalName(ev)), orDash(src), orDash(ev.Status), orDash(auditDetail(r.typ, ev)))
	}
	if more && a.flushed {
		return nil
	}
	a.flushed = true
	return a.w.Flush()
}

// flush writes out what is buffered.
func (a *auditWriter) flush() error { return a.w.Flush() }

func principalName(ev audit.AuditEvent) string {
	u := ev.Principal()
	switch {
	case u == nil:
		return ""
	case u.EmailAddr != "":
		return u.EmailAddr
	}
	return u.UID
}

// auditDetail is the DETAIL column: why a login failed or a session ended,
// which endpoint an invocation called and how it went.
func auditDetail(t audit.EventType, ev audit.AuditEvent) string {
	var parts []string
	add := func(s string) {
		if s != "" && (len(parts) == 0 || parts[len(parts)-1] != s) {
			parts = append(parts, s)
		}
	}
	if ev.API != nil {
		add(ev.API.Service.Name)
	}
	add(ev.StatusDetail)
	add(ev.StatusCode)
	if (t == audit.InvocationCompleted || t == audit.InvocationFailed) && ev.Duration > 0 {
		add(strconv.FormatInt(ev.Duration, 10) + "ms")
	}
	return strings.Join(parts, " ")
}
