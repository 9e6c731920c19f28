// Package aws is the controller's production platform: each ServingApp runs
// as an ECS Fargate service behind the shared ALB listener, with a target
// group, source-ip listener rules and Secrets Manager secrets. The
// servingapp-controller binary builds it (New); it implements
// controller.Platform, controller.OrphanCollector and oauth.SecretStore, and
// serves autoscaling (SetDesiredCount) and lockout (SetBlocked).
//
// # Resources of one app
//
// In creation order (deletion goes the other way):
//
//   - the session key secret "<secretPrefix><ns>/<name>/session-key": 32
//     random bytes, base64, created once and kept (restored if it was
//     scheduled for deletion); the OAuth client secret is stored through
//     the SecretStore methods. Deleted secrets keep the recovery window.
//   - a task definition in family "<controller>_<ns>_<name>": Fargate,
//     awsvpc, container "webapp" on port 8080 with the model's environment,
//     its secrets and the session key as `secrets` valueFrom ARNs, awslogs.
//     A revision is registered only when the normalized definition differs
//     from the service's (and from the newest revisions, which a crash may
//     have left undeployed); after a rollout completes, revisions beyond the
//     newest three are deregistered. RegisterTaskDefinition has no client
//     token, so the SDK's retry after a lost answer registers the spec
//     twice: after a registration that took more than one attempt, and
//     whenever the check before registering finds one spec twice (a crash
//     came in between), the identical revisions of ours but one are
//     deregistered.
//   - the target group "sa-<ns>-<name>…-<hash>" (32 characters at most):
//     ip targets, HTTP 8080, health check /healthz, deregistration delay 30s.
//   - listener rules: host-header + path-pattern + source-ip, forwarding to
//     the target group, the allowlist split so no rule has more than five
//     condition values (host and path values count). CreateRule has no
//     client token either: when its retry finds the priority taken, the
//     rule there is adopted if it carries exactly our tags, conditions and
//     action (the lost first attempt made it);
//   - the ECS service of the family's name: Fargate, the network
//     configuration, the target group binding, the deployment circuit
//     breaker with rollback, the health check grace period, tags propagated
//     from the service. CreateService carries a client token derived from
//     the app's uid and generation. The desired count is set at creation
//     (the minimum for autoscaled apps) and afterwards only for apps without
//     autoscaling; SetDesiredCount is the autoscaler's lever.
//
// Everything is tagged servingapp.io/managed-by (the controller id),
// servingapp.io/app ("<ns>/<name>"), servingapp.io/uid and the extra tags.
// Only resources tagged with this controller's id are ever changed or
// deleted; for listener rules and target groups the tags are read again
// right before each change. A resource with one of our names that is not
// tagged as ours is a NameConflict (a TerminalError), never adopted.
// deletionPolicy Retain removes only the ownership tags.
//
// # Reads: a resync costs well under one call per app
//
// Observe does not read per app. Three shared views answer it:
//
//   - the listener snapshot: every rule of the listener (one DescribeRules
//     page per 400 rules), the load balancer's other listeners' rules (for
//     the quota) and its target groups, with the tags of ours (DescribeTags,
//     20 per call, re-read hourly; tags only change by our hand otherwise).
//   - the secrets listing: ListSecrets filtered by the secret prefix, tags
//     included, 100 per page.
//   - a DescribeServices batcher: a miss describes the service asked for
//     and up to nine other known services whose answers are getting old, in
//     one call; concurrent misses wait for the call under way. So whatever
//     order the workers take the apps of a resync in, ten apps share one
//     call. CollectOrphans, which runs at every resync, lists the cluster's
//     services and primes this cache.
//
// The snapshots serve for Options.SnapshotMaxAge (20s) and the service
// answers for Options.ServiceMaxAge (5s, so rollouts are followed closely);
// every change this platform makes is written into them at once, and a read
// that started before a change never overwrites it. Task definition
// revisions never change, so each is described once per process. With 200
// apps (bench_test.go) a steady-state resync costs 0.14 read calls per app
// (20 of them DescribeServices) and no mutating call; creating an app costs
// about 9 calls (6.7 of them mutating); a restarted controller, all caches
// cold and at the default rate limits, verifies the 200 apps in about 13s.
//
// # Listener rule priorities
//
// Priorities come from the configured range and are kept: an existing rule
// keeps its priority, so priorities are stable across reconciles and
// restarts, and a restarted controller derives everything from the rules
// that exist. Among our rules with the same host, ALB's first-match order
// must put more specific paths first ("/api/*" before "/*") and an app's
// lockout rules before its allow rules. A new rule goes in the middle of the
// largest free gap between its neighbours in that order, avoiding every
// priority in use on the listener (rules of others included). Only when no
// gap is left are the host's rules spread out again, moved with one
// SetRulePriorities call.
//
// An allowlist change never cuts off an address that stays allowed: every
// such address stays in the rule that holds it (ModifyRule is atomic),
// rules are created before others are modified and modified before others
// are deleted, and free room in existing rules is used first, so editing a
// few addresses is usually one ModifyRule. Rule and target group quotas are
// checked against the snapshot and DescribeAccountLimits before any call,
// and reported as QuotaExceeded.
//
// # Lockout
//
// SetBlocked puts the blocked addresses in rules of ours answering 403,
// three addresses a rule (two under a path prefix), ordered before the
// app's allow rules. They count against the same 100 rules per load
// balancer and the same priority range as the allow rules of every app, so
// an attacker logging in from many addresses must not use them up: an app
// gets at most Config.BlockRulesPerApp lockout rules (default 4, so 12
// addresses), and lockout never takes the last Config.BlockRuleReserve
// rules or priorities (default 10), which stay free for allow rules; when
// other rules eat into that reserve, lockout rules shrink to give it back.
// When not every address fits, the most recently blocked ones that do are
// blocked (the platform remembers when each address first came; after a
// restart the rules in place count as oldest) and SetBlocked returns a
// *BlockBudgetError naming how many are not. The usage engine logs that,
// counts it in servingapp_usage_failures_total{op="set_blocked"} and asks
// again every second; asking again with the same addresses makes no AWS
// call.
//
// # Failed rollouts
//
// The service carries servingapp.io/spec, the hash of the task definition
// spec this platform last deployed to it. When ECS's circuit breaker rolls a
// deployment back, the service runs another spec while the tag still names
// the desired one: the app is reported RolloutFailed (with a warning event
// once) and the spec is not deployed again until it changes, instead of
// failing and rolling back at every reconcile. A FAILED deployment of the
// desired spec, while still listed, says the same sooner.
//
// # Throttling
//
// Every client uses the SDK's adaptive retry mode with the configured
// maximum attempts, and a client-side token bucket per service and
// operation class (describe, mutate). Every attempt is counted in
// servingapp_aws_calls_total{service,operation,outcome}.
package aws
