// Package awsemu is the AWS endpoint the AWS platform's tests and benchmarks
// run against: ECS, ELBv2 and Secrets Manager emulators with AWS's wire
// formats and semantics, behind one loopback URL with fault injection and
// call accounting; any other request is forwarded to an in-process kumo.
package awsemu
