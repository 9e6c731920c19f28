// Package controller is the operator's engine: it turns store events and
// periodic resyncs into reconciles of single keys, runs them one key at a time
// with backoff, elects one active controller, and reports status and events.
// Platforms (controller/aws, controller/local) plug in behind Platform.
package controller
