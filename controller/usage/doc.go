// Package usage is the controller's consumer of the audit stream: it keeps
// status.usage of every app, autoscales apps with spec.autoscaling and locks
// out source addresses after repeated failed logins. controller/runner runs
// its Engine on the leader; platforms take part by implementing Scaler and
// Blocker.
//
// The Engine reads SERVINGAPP_AUDIT with the durable consumer
// "servingapp-usage" (explicit acknowledgement), filtered to login and
// invocation events. Per app it counts events into minute buckets by event
// time (Window) and keeps a record in the KV bucket "servingapp-usage":
// the buckets, the last stream sequence folded in, the ids of the last
// events, the lockout and autoscaling state. Every StatusInterval (10 s) at
// most, an app with news is flushed: record stored (compare-and-set), then
// status.usage written, then its messages acknowledged.
//
// Exactly once across restarts: a starting Engine loads the records and
// resets the durable consumer to its ack floor, so every message after the
// floor is delivered again, in stream order, whatever a dead predecessor had
// read. Because each app's messages are then folded in order, the record's
// sequence says exactly which of them it already counts: those at or below
// it are skipped (and acknowledged after the next flush), the rest counted.
// Acknowledging only after the record is stored keeps every unacknowledged
// message above the floor. An event the stream stored twice under two
// sequences (a publisher retrying after the 2-minute duplicate window) is
// recognised by its id among the app's last RecentIDs events.
//
// Autoscaling and lockout act through the platform at once, not at the
// flush: Decide scales up immediately and down after Stabilization of lower
// demand; Lockouts blocks an address for the policy's duration after its
// Failures-th failed login within the window, and Engine lifts it on time.
// Both are recorded as reconcile events, with their inputs.
package usage
