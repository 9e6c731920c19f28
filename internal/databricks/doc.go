// Package databricks provides REST clients for the Databricks workspace API
// (Model Serving invocations and endpoint state, SCIM Me) and the account API
// (OAuth custom app integrations, authenticated with machine-to-machine tokens).
//
// The web app uses WorkspaceClient with each user's own access token; the
// controller uses AccountClient with a service principal's client credentials.
// Both decode failures into *APIError, retry 429 and 503 answers with backoff
// that honours Retry-After, and never put request bodies or tokens in errors.
// Base URLs are configurable so the same clients talk to the emulator in
// internal/databricks/emulator.
package databricks
