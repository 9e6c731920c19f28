package awsemu

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// serviceCall is one read call to an emulated service.
type serviceCall struct {
	service, operation string
	call               func(context.Context, clients) error
}

// oneCallPerService lists one read call per emulated service.
func oneCallPerService() []serviceCall {
	return []serviceCall{
		{ServiceECS, "ListClusters", func(ctx context.Context, c clients) error {
			_, err := c.ecs.ListClusters(ctx, &ecs.ListClustersInput{})
			return err
		}},
		{ServiceELBv2, "DescribeLoadBalancers", func(ctx context.Context, c clients) error {
			_, err := c.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{})
			return err
		}},
		{ServiceSecretsManager, "ListSecrets", func(ctx context.Context, c clients) error {
			_, err := c.sm.ListSecrets(ctx, &sm.ListSecretsInput{})
			return err
		}},
	}
}

func TestFaultThrottleIsARetryableThrottleForTheSDK(t *testing.T) {
	for _, svc := range oneCallPerService() {
		t.Run(svc.service, func(t *testing.T) {
			srv := New(Options{})
			t.Cleanup(srv.Close)
			if err := srv.SetFaults(Fault{Service: svc.service, Kind: FaultThrottle, Fraction: 1}); err != nil {
				t.Fatal(err)
			}

			// One attempt: the error is a throttle by the SDK's own rules.
			err := svc.call(ctx(t), newClients(t, srv.URL, noRetry))
			wantStatus(t, err, http.StatusBadRequest)
			if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
				t.Errorf("SDK does not classify %v as a throttle", err)
			}
			if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
				t.Errorf("SDK does not classify %v as retryable", err)
			}

			// The standard retryer retries it until it runs out of attempts.
			srv.ResetCalls()
			err = svc.call(ctx(t), newClients(t, srv.URL, fastRetry))
			var maxErr *retry.MaxAttemptsError
			if !errors.As(err, &maxErr) {
				t.Fatalf("with retries: %v, want MaxAttemptsError", err)
			}
			if got := srv.Calls()[CallKey{svc.service, svc.operation, OutcomeThrottled}]; got != 8 {
				t.Errorf("throttled attempts = %d, want 8 (every retry reached the server)", got)
			}
		})
	}
}

func TestFaultServerErrorIsRetryable(t *testing.T) {
	for _, svc := range oneCallPerService() {
		t.Run(svc.service, func(t *testing.T) {
			srv := New(Options{})
			t.Cleanup(srv.Close)
			if err := srv.SetFaults(Fault{Kind: FaultServerError, Fraction: 1, Limit: 2}); err != nil {
				t.Fatal(err)
			}
			err := svc.call(ctx(t), newClients(t, srv.URL, noRetry))
			wantStatus(t, err, http.StatusInternalServerError)
			if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
				t.Errorf("SDK does not classify %v as retryable", err)
			}
			// The second (and last) injected 500 is retried away.
			if err := svc.call(ctx(t), newClients(t, srv.URL, fastRetry)); err != nil {
				t.Fatalf("after the fault's limit: %v", err)
			}
			calls := srv.Calls()
			if calls.Outcome(OutcomeServerError) != 2 || calls.Outcome(OutcomeOK) != 1 {
				t.Errorf("calls = %v, want 2 server errors and 1 success", calls)
			}
		})
	}
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Fatalf("error %v, want HTTP %d", err, status)
	}
}

func TestTwentyPercentThrottlingConvergesWithTheStandardRetryer(t *testing.T) {
	srv := New(Options{Seed: 7})
	t.Cleanup(srv.Close)
	c := newClients(t, srv.URL, fastRetry)
	f := newFixture(t, c, "flaky")
	if err := srv.SetFaults(Fault{Kind: FaultThrottle, Fraction: 0.2}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		name := fmt.Sprintf("svc-%d", i)
		must(c.ecs.CreateService(ctx(t), withToken(f.serviceInput(name, 1), name)))(t)
		must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String(name), SecretString: aws.String("v")}))(t)
		must(c.elb.DescribeRules(ctx(t), &elb.DescribeRulesInput{ListenerArn: aws.String(f.listenerArn)}))(t)
	}
	calls := srv.Calls()
	throttled, ok := calls.Outcome(OutcomeThrottled), calls.Outcome(OutcomeOK)
	if throttled == 0 || ok < 60 {
		t.Fatalf("throttled %d, ok %d: want some throttles and all 60 calls succeeding", throttled, ok)
	}
	list := must(c.ecs.ListServices(ctx(t), &ecs.ListServicesInput{Cluster: aws.String(f.cluster), MaxResults: aws.Int32(100)}))(t)
	if len(list.ServiceArns) != 20 {
		t.Errorf("%d services after retried creates, want 20", len(list.ServiceArns))
	}
}

func TestFaultsAreDeterministicForASeed(t *testing.T) {
	run := func(seed uint64) []Outcome {
		srv := New(Options{Seed: seed})
		defer srv.Close()
		c := newClients(t, srv.URL, noRetry)
		if err := srv.SetFaults(Fault{Service: ServiceECS, Kind: FaultThrottle, Fraction: 0.5}); err != nil {
			t.Fatal(err)
		}
		var out []Outcome
		for range 32 {
			if _, err := c.ecs.ListClusters(ctx(t), &ecs.ListClustersInput{}); err != nil {
				out = append(out, OutcomeThrottled)
			} else {
				out = append(out, OutcomeOK)
			}
		}
		return out
	}
	a, b, other := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	if slices.Equal(a, other) {
		t.Errorf("different seeds gave identical fault sequences")
	}
	if n := len(slices.DeleteFunc(slices.Clone(a), func(o Outcome) bool { return o == OutcomeOK })); n == 0 || n == len(a) {
		t.Errorf("fraction 0.5 throttled %d of %d calls", n, len(a))
	}
}

func TestFaultMatchingAndLimits(t *testing.T) {
	srv, c := newTestServer(t, Options{})
	c = newClients(t, srv.URL, noRetry)
	if err := srv.SetFaults(
		Fault{Service: ServiceECS, Operation: "CreateCluster", Kind: FaultThrottle, Fraction: 1, Limit: 2},
		Fault{Service: ServiceECS, Kind: FaultDelay, Fraction: 1, Delay: time.Millisecond},
	); err != nil {
		t.Fatal(err)
	}
	create := func() error {
		_, err := c.ecs.CreateCluster(ctx(t), &ecs.CreateClusterInput{ClusterName: aws.String("c")})
		return err
	}
	wantCode(t, create(), "ThrottlingException")
	must(c.ecs.ListClusters(ctx(t), &ecs.ListClustersInput{}))(t)
	wantCode(t, create(), "ThrottlingException")
	if err := create(); err != nil {
		t.Fatalf("third CreateCluster after a limit of 2: %v", err)
	}
	must(c.sm.ListSecrets(ctx(t), &sm.ListSecretsInput{}))(t)

	// After: the first two mutating ECS calls pass, every later one fails.
	if err := srv.SetFaults(Fault{Service: ServiceECS, Operation: "CreateCluster", Kind: FaultServerError, Fraction: 1, After: 2}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", "", "ServerException", "ServerException"} {
		if got := errorCode(create()); got != want {
			t.Errorf("CreateCluster #%d with After 2: %q, want %q", i+1, got, want)
		}
	}

	srv.ClearFaults()
	if err := create(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Fault{
		{Kind: FaultThrottle, Fraction: 1.5},
		{Kind: FaultKind(9), Fraction: 1},
		{Kind: FaultDelay, Fraction: 1},
		{Kind: FaultThrottle, Fraction: 1, After: -1},
	} {
		if err := srv.SetFaults(bad); err == nil {
			t.Errorf("SetFaults(%+v) accepted", bad)
		}
	}
}

// TestLostResponsesTakeEffect: a call hit by FaultResponseLost or
// FaultConnectionDropped takes effect, the call hook runs for it, and the
// client gets no answer (HTTP 500, or a connection error); with retries the
// SDK sends it again, so a call without idempotency runs twice.
func TestLostResponsesTakeEffect(t *testing.T) {
	kinds := []struct {
		kind    FaultKind
		wantErr func(t *testing.T, err error)
	}{
		{FaultResponseLost, func(t *testing.T, err error) { wantStatus(t, err, http.StatusInternalServerError) }},
		{FaultConnectionDropped, func(t *testing.T, err error) {
			var re *smithyhttp.RequestSendError
			if !errors.As(err, &re) {
				t.Fatalf("error %v, want a RequestSendError (no response)", err)
			}
			if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
				t.Errorf("SDK does not classify %v as retryable", err)
			}
		}},
	}
	calls := []struct {
		name  string
		call  func(context.Context, clients) error
		count func(*testing.T, clients) int // how many times the call took effect
	}{
		{"ECS RegisterTaskDefinition", func(ctx context.Context, c clients) error {
			_, err := c.ecs.RegisterTaskDefinition(ctx, taskDefInput("lost", testImage))
			return err
		}, func(t *testing.T, c clients) int {
			return len(must(c.ecs.ListTaskDefinitions(ctx(t), &ecs.ListTaskDefinitionsInput{FamilyPrefix: aws.String("lost")}))(t).TaskDefinitionArns)
		}},
		{"ELBv2 CreateLoadBalancer", func(ctx context.Context, c clients) error {
			_, err := c.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: aws.String("lost"), Subnets: []string{"subnet-a", "subnet-b"}})
			return err
		}, func(t *testing.T, c clients) int {
			return len(must(c.elb.DescribeLoadBalancers(ctx(t), &elb.DescribeLoadBalancersInput{}))(t).LoadBalancers)
		}},
		{"Secrets Manager CreateSecret", func(ctx context.Context, c clients) error {
			_, err := c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String("lost"), SecretString: aws.String("v")})
			return err
		}, func(t *testing.T, c clients) int {
			return len(must(c.sm.ListSecrets(ctx(t), &sm.ListSecretsInput{}))(t).SecretList)
		}},
	}
	for _, k := range kinds {
		for _, call := range calls {
			t.Run(k.kind.String()+"/"+call.name, func(t *testing.T) {
				srv := New(Options{})
				t.Cleanup(srv.Close)
				c := newClients(t, srv.URL, noRetry)
				if err := srv.SetFaults(Fault{Kind: k.kind, Fraction: 1, Limit: 1}); err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				var hooked []CallKey
				srv.SetCallHook(func(k CallKey) {
					mu.Lock()
					defer mu.Unlock()
					hooked = append(hooked, k)
				})
				k.wantErr(t, call.call(ctx(t), c))
				srv.SetCallHook(nil)
				mu.Lock()
				defer mu.Unlock()
				if len(hooked) != 1 || hooked[0].Outcome != OutcomeServerError {
					t.Errorf("the call hook saw %v, want the one call as a server error", hooked)
				}
				if n := call.count(t, c); n != 1 {
					t.Errorf("took effect %d times, want 1", n)
				}
				if got := srv.Calls().Outcome(OutcomeServerError); got != 1 {
					t.Errorf("server errors counted %d, want 1", got)
				}
			})
		}
	}
	// The SDK's retry after a lost answer repeats a call without a client
	// token: two revisions.
	srv := New(Options{})
	t.Cleanup(srv.Close)
	c := newClients(t, srv.URL, fastRetry)
	if err := srv.SetFaults(Fault{Service: ServiceECS, Operation: "RegisterTaskDefinition", Kind: FaultResponseLost, Fraction: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	out := must(c.ecs.RegisterTaskDefinition(ctx(t), taskDefInput("twice", testImage)))(t)
	if got := aws.ToInt32(&out.TaskDefinition.Revision); got != 2 {
		t.Errorf("the retried registration answered revision %d, want 2 (the lost one was 1)", got)
	}
}
