// Package awsemu is the AWS endpoint the AWS platform's tests and benchmarks
// run against: ECS, ELBv2 and Secrets Manager emulators with AWS's wire
// formats and semantics, behind one loopback URL with fault injection and
// call accounting; any other request is forwarded to an in-process kumo.
//
// # Use
//
//	srv := awsemu.New(awsemu.Options{})
//	defer srv.Close()
//	cfg.BaseEndpoint = aws.String(srv.URL) // or AWS_ENDPOINT_URL=srv.URL
//
// Use the real aws-sdk-go-v2 clients with any static credentials and region;
// signatures are not checked. Each Server has its own state, so tests may run
// in parallel with one Server each.
//
// # Routing
//
// The service is read from the request, never from the path: the AWS JSON
// X-Amz-Target prefix (AmazonEC2ContainerServiceV20141113 is ECS,
// secretsmanager is Secrets Manager), else the service of the SigV4
// credential scope (elasticloadbalancing with API version 2015-12-01 is
// ELBv2), else, for unsigned Query requests, the API version. ECS, ELBv2 and
// Secrets Manager are served by this package; everything else (STS, classic
// ELB, ...) goes to a kumo server started on first use.
//
// # Simulated time
//
// The emulators read a simulated clock: Options.Now (default: frozen at the
// wall time of New) plus whatever Server.Advance added. ECS deployments move
// in steps of ECSOptions.RolloutStep (default 15s): tasks launched in one step
// run in the next, old deployments drain within minimumHealthyPercent,
// launches stay within maximumPercent, a lone primary deployment at its
// desired count turns COMPLETED and the service logs "(service x) has reached
// a steady state.". DeleteService (force) turns a service DRAINING, then
// INACTIVE once its tasks stopped; INACTIVE services stay describable for
// ECSOptions.InactiveRetention (default 1h), then DescribeServices reports
// them MISSING. Secrets scheduled for deletion are removed for good when
// their recovery window ends. ECSOptions.InstantRollout settles every
// deployment inside the call that started it, for benchmarks.
// Server.SetDeploymentFailer makes chosen deployments' tasks fail to start,
// to exercise the deployment circuit breaker (FAILED, then rollback to the
// last completed task definition).
//
// # Faults and call accounting
//
// Server.SetFaults installs rules that answer a fraction of the calls to a
// service/operation with a throttling error (HTTP 400, ThrottlingException in
// AWS JSON, Throttling in AWS Query: the SDK retryers classify both as
// retryable throttles), an HTTP 500, or an added delay; draws come from a
// random source seeded by Options.Seed. FaultResponseLost and
// FaultConnectionDropped serve the call (it takes effect) and then lose its
// answer: an HTTP 500, or a connection closed without a response. The SDK
// retries both, so they show what a retried call that is not idempotent
// does (RegisterTaskDefinition registers twice, CreateRule finds its own
// priority taken), and with a later Fault.After rule they stand for a
// controller that dies right after a call took effect. Server.Calls counts every attempt by
// service, operation and Outcome; CallCounts.Since and CallCounts.Mutating
// express "the second reconcile made no mutating call", with
// IsReadOperation classifying Describe*/List*/Get* as reads.
// Server.SetCallHook runs a function after each emulated call took effect
// and before the client sees its response; with Server.ListenerRules it
// checks an invariant (say, "this address stays allowed") at every
// intermediate step of a reconcile. Fault.After cuts a client off after its
// kth matching call.
//
// # kumo v0.33.1, and why this package serves ELBv2 and Secrets Manager itself
//
// TestConformance runs the same table of SDK-level checks against this
// package and against a bare kumo v0.33.1 server; it records what kumo does
// and fails when that changes. Findings:
//
//   - State is process-wide: every kumo.NewServer() in a test binary shares
//     one in-memory store per service (registered in init). Tests with their
//     own endpoints would see each other's target groups, rules and secrets,
//     and a garbage-collection test would delete another test's resources.
//     This alone rules out kumo for the services the platform owns; the
//     whole of ELBv2 and Secrets Manager is therefore served here, each
//     Server with its own state. Requests forwarded to kumo still share it.
//   - ECS: no DescribeServices, DescribeTaskDefinition, ListServices,
//     ListTaskDefinitions, TagResource, UntagResource, ListTagsForResource;
//     CreateService is not idempotent and answers a repeated name with
//     ServiceAlreadyExistsException, an error ECS does not have. Served here.
//   - ELBv2 rules: duplicate priorities accepted (AWS: PriorityInUse), also
//     through SetRulePriorities; the 5 condition values per rule limit not
//     enforced (AWS: ValidationError "A rule can only have '5' condition
//     values"); DescribeRules ignores PageSize/Marker and lists the default
//     rule first, then creation order (AWS: by priority, default last).
//   - ELBv2 target groups: names over 32 characters accepted (AWS:
//     ValidationError); a target group in use by a rule can be deleted (AWS:
//     ResourceInUse); an identical CreateTargetGroup fails with
//     DuplicateTargetGroupName (AWS: idempotent, returns the existing one).
//   - Secrets Manager: no RestoreSecret, TagResource or UntagResource;
//     ListSecrets ignores Filters (so tag-based ownership cannot be queried);
//     CreateSecret of a name scheduled for deletion answers
//     ResourceExistsException (AWS: InvalidRequestException); a CreateSecret
//     retried with the same ClientRequestToken fails (AWS: succeeds); a second
//     DeleteSecret of a scheduled secret is accepted (AWS:
//     InvalidRequestException); RecoveryWindowInDays outside 7-30 accepted
//     (AWS: InvalidParameterException).
//   - Faithful in kumo: load balancer/listener/target group round trips,
//     ModifyTargetGroupAttributes, rule conditions (host-header, path-pattern,
//     source-ip) and forward actions, ModifyRule, SetRulePriorities swaps,
//     DeleteRule, AddTags/DescribeTags/RemoveTags on rules and target groups
//     (also tags given to CreateRule), SecretBinary, version stages,
//     GetSecretValue on a scheduled secret, forced deletion, ListSecrets
//     hiding scheduled secrets.
//
// # What the emulators enforce beyond that
//
// ECS: unique service names among ACTIVE and DRAINING services per cluster
// ("Creation of service was not idempotent.", "Unable to Start a service that
// is still Draining."); clientToken (at most 36 characters) idempotency, the
// token being part of the compared request; DescribeServices with at most 10
// services and failures[] reason MISSING; typed errors ClusterNotFound,
// ServiceNotFound, ServiceNotActive, InvalidParameter, Client (unknown task
// definition); Fargate cpu/memory combinations and awsvpc network
// configuration; load balancer bindings checked against the task definition
// and, through the ELBv2 emulator, against target groups, which must exist,
// be of type ip for awsvpc and already be attached to a load balancer by a
// listener or rule, as on AWS; task definition revisions never reused,
// INACTIVE after deregistration, container definitions normalized like ECS
// (essential, hostPort, protocol, empty lists); ECS-style defaults in
// DescribeServices (deployment percents, circuit breaker, alarms, strategy
// ROLLING, assignPublicIp DISABLED).
//
// ELBv2: priorities 1-50000 unique per listener (CreateRule and the whole of
// a SetRulePriorities call), condition values (default 5) and wildcards per
// rule, one host-header/path-pattern/source-ip condition each, valid CIDRs,
// rules and distinct target groups per load balancer (ELBv2Options, default
// 100 each; DescribeAccountLimits reports them), one load balancer per target
// group, target group name/health check validation and AWS defaults,
// attribute validation, idempotent CreateLoadBalancer/CreateListener/
// CreateTargetGroup, host-header and path-pattern conditions reported in both
// Values and their config, forward actions in both TargetGroupArn and
// ForwardConfig forms, default rule that cannot be deleted or re-prioritized,
// DescribeRules/DescribeTargetGroups/DescribeListeners pagination, at most 50
// tags and 20 ARNs per tagging call.
//
// Secrets Manager: name validation, lookup by name, full or partial ARN,
// ClientRequestToken idempotency for CreateSecret and PutSecretValue,
// AWSCURRENT/AWSPREVIOUS staging, scheduled deletion with DeletedDate,
// RestoreSecret, ListSecrets filters (name, description, tag-key, tag-value,
// all; prefix match, "!" negation, values ORed, filters ANDed), sorting and
// pagination.
//
// # Not emulated
//
// ECS tasks (RunTask, DescribeTasks, ListTasks), capacity providers beyond
// echoing them, service connect, task sets, blue/green and external
// deployment controllers, container health checks (tasks are healthy once
// running unless a deployment failer says otherwise), the periodic repeat of
// the steady-state event. ELBv2 targets and their health (RegisterTargets,
// DescribeTargetHealth), ModifyListener, load balancer attributes, network
// and gateway load balancers, a check that a target group's VPC matches the
// load balancer's. Secrets Manager rotation, replication, resource policies,
// BatchGetSecretValue, ListSecretVersionIds, KMS. Unsupported operations of
// the three services answer UnknownOperationException (AWS JSON) or
// InvalidAction (AWS Query) instead of reaching kumo, whose state would not
// match. Error messages follow AWS where known; where AWS's wording is not
// known the error code and type are still AWS's.
package awsemu
