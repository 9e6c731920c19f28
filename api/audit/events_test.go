package audit_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
)

func TestNewAuditEventClassifiesEveryTypeForOCSF(t *testing.T) {
	tests := []struct {
		typ                          audit.EventType
		class, activity, status, sev int
	}{
		{audit.LoginSucceeded, 3002, 1, 1, 1},
		{audit.LoginFailed, 3002, 1, 2, 3},
		{audit.Logout, 3002, 2, 1, 1},
		{audit.SessionExpired, 3002, 2, 1, 1},
		{audit.SessionRefreshed, 3002, 5, 1, 1},
		{audit.InvocationCompleted, 6003, 99, 1, 1},
		{audit.InvocationFailed, 6003, 99, 2, 2},
	}
	if len(tests) != len(audit.EventTypes) {
		t.Fatalf("table covers %d types, there are %d", len(tests), len(audit.EventTypes))
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			ev := audit.NewAuditEvent(tt.typ, testApp, time.Unix(1_700_000_000, 0))
			if ev.ClassUID != tt.class || ev.ActivityID != tt.activity || ev.StatusID != tt.status || ev.SeverityID != tt.sev {
				t.Fatalf("class %d activity %d status %d severity %d; want %d %d %d %d",
					ev.ClassUID, ev.ActivityID, ev.StatusID, ev.SeverityID, tt.class, tt.activity, tt.status, tt.sev)
			}
			if ev.TypeUID != tt.class*100+tt.activity {
				t.Fatalf("type_uid %d", ev.TypeUID)
			}
			if ev.CategoryUID != tt.class/1000 || ev.ClassName == "" || ev.ActivityName == "" || ev.Status == "" || ev.Severity == "" {
				t.Fatalf("incomplete classification: %+v", ev)
			}
			if ev.Time != 1_700_000_000_000 || ev.App() != testApp || ev.Metadata.Version != audit.OCSFVersion {
				t.Fatalf("time/app/metadata: %+v", ev)
			}
		})
	}
}

func TestAuditEventRoundTripsThroughTheCloudEventEnvelope(t *testing.T) {
	ev := audit.NewAuditEvent(audit.InvocationCompleted, testApp, time.UnixMilli(1_700_000_000_123))
	ev.Actor = &audit.Actor{User: &audit.User{UID: "sub-1", EmailAddr: "alice@example.com"}, Session: &audit.Session{UID: "hashed"}}
	ev.API = &audit.API{Operation: "invocations", Service: audit.Service{Name: "summarizer"}}
	ev.Unmapped.Usage = &audit.TokenUsage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}
	b, err := audit.EncodeAuditEvent("evt-1", audit.InvocationCompleted, ev)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"specversion": "1.0", "id": "evt-1", "type": "io.servingapp.audit.invocation.completed",
		"source": "/servingapp/apps/analytics/summarizer", "subject": "analytics/summarizer",
		"time": "2023-11-14T22:13:20.123Z", "datacontenttype": "application/json",
	} {
		if raw[k] != want {
			t.Errorf("%s = %v, want %s", k, raw[k], want)
		}
	}
	ce, typ, got, err := audit.DecodeAuditEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if ce.ID != "evt-1" || typ != audit.InvocationCompleted || got.Metadata.UID != "evt-1" {
		t.Fatalf("decoded %s %s %s", ce.ID, typ, got.Metadata.UID)
	}
	if got.Principal().EmailAddr != "alice@example.com" || got.SessionUID() != "hashed" || got.Unmapped.Usage.TotalTokens != 5 {
		t.Fatalf("decoded data: %+v", got)
	}

	other, _ := audit.EncodeReconcileEvent("r-1", time.Now(), audit.ReconcileEvent{Namespace: "a", Name: "b", Reason: "X"})
	if _, _, _, err := audit.DecodeAuditEvent(other); !errors.Is(err, audit.ErrNotAuditEvent) {
		t.Fatalf("decoding a reconcile event: %v", err)
	}
}

func TestAuditSubjectEndsWithTheType(t *testing.T) {
	if got := audit.AuditSubject("analytics", "summarizer", audit.LoginFailed); got != "servingapp.audit.analytics.summarizer.login.failed" {
		t.Fatal(got)
	}
	if got := audit.AuditAppSubjects("analytics", "summarizer"); !strings.HasSuffix(got, ".>") {
		t.Fatal(got)
	}
	if _, err := audit.EncodeAuditEvent("x", "bogus", audit.AuditEvent{}); err == nil {
		t.Fatal("unknown type encoded")
	}
}
