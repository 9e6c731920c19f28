package v1alpha1

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
)

// Limits enforced by validation. They come from AWS and Databricks limits or
// from what one ServingApp can sensibly ask of the platform.
const (
	MaxReplicas        = 100
	MaxAllowlist       = 100
	MinSessionTTL      = 5 * time.Minute
	MaxSessionTTL      = 7 * 24 * time.Hour
	maxHostLen         = 128 // an ALB host-header condition value holds at most 128 characters
	maxPathPrefixLen   = 126 // the path-pattern "<prefix>/*" must fit ALB's 128 characters
	maxLabelValueLen   = 63
	maxSecretRefLen    = 2048
	maxServingEndpoint = 63
)

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostLabelRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	qualifiedRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	pathPrefixRE   = regexp.MustCompile(`^/[A-Za-z0-9._~/@:+$-]*$`)
	endpointNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	secretNameRE   = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]+$`)
	scopeRE        = regexp.MustCompile(`^[A-Za-z0-9._:/-]+$`)
)

// fargateRange is the memory a Fargate CPU size accepts, in MiB.
type fargateRange struct{ min, max, step int32 }

// fargateSizes are the CPU/memory pairs Fargate accepts (Linux).
var fargateSizes = map[int32]fargateRange{
	256:   {512, 2048, 0}, // 512, 1024, 2048 only
	512:   {1024, 4096, 1024},
	1024:  {2048, 8192, 1024},
	2048:  {4096, 16384, 1024},
	4096:  {8192, 30720, 1024},
	8192:  {16384, 61440, 4096},
	16384: {32768, 122880, 8192},
}

func fargateMemoryOK(cpu, mem int32) bool {
	r, ok := fargateSizes[cpu]
	if !ok {
		return false
	}
	if r.step == 0 {
		return mem == 512 || mem == 1024 || mem == 2048
	}
	return mem >= r.min && mem <= r.max && (mem-r.min)%r.step == 0
}

// Validate reports every problem in a (already defaulted), each with its field
// path. It returns nil when a is valid.
func Validate(a *ServingApp) FieldErrors {
	var l errorList
	if a.APIVersion != APIVersion {
		l.add("apiVersion", "must be %q, not %q", APIVersion, a.APIVersion)
	}
	if a.Kind != Kind {
		l.add("kind", "must be %q, not %q", Kind, a.Kind)
	}
	validateMeta(&l, "metadata", &a.Metadata)
	validateSpec(&l, "spec", &a.Spec)
	return l.errs
}

func validateMeta(l *errorList, p path, m *ObjectMeta) {
	validateDNSLabel(l, p.child("name"), m.Name)
	validateDNSLabel(l, p.child("namespace"), m.Namespace)
	for _, k := range sortedKeys(m.Labels) {
		validateQualifiedKey(l, p.child("labels").key(k), k)
		v := m.Labels[k]
		if v != "" && (len(v) > maxLabelValueLen || !qualifiedRE.MatchString(v)) {
			l.add(p.child("labels").key(k), "%q is not a valid label value: at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
		}
	}
	for _, k := range sortedKeys(m.Annotations) {
		validateQualifiedKey(l, p.child("annotations").key(k), k)
	}
}

func validateDNSLabel(l *errorList, p path, s string) {
	switch {
	case s == "":
		l.add(p, "is required")
	case len(s) > 63:
		l.add(p, "%q is longer than 63 characters", s)
	case !dnsLabelRE.MatchString(s):
		hint := ""
		if low := strings.ToLower(s); low != s && dnsLabelRE.MatchString(low) {
			hint = fmt.Sprintf("; did you mean %q?", low)
		}
		l.add(p, "%q is not a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit%s", s, hint)
	}
}

// validateQualifiedKey checks a label or annotation key: [prefix/]name, where the
// prefix is a DNS subdomain, as in Kubernetes.
func validateQualifiedKey(l *errorList, p path, k string) {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && (prefix == "" || len(prefix) > 253 || !isHostname(prefix)) {
		l.add(p, "key prefix %q is not a DNS subdomain", prefix)
	}
	if len(name) > 63 || !qualifiedRE.MatchString(name) {
		l.add(p, "key %q is not valid: at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit, with an optional DNS subdomain prefix and '/'", k)
	}
}

func validateSpec(l *errorList, p path, s *ServingAppSpec) {
	if s.Image != "" && (strings.ContainsAny(s.Image, " \t\n") || len(s.Image) > 255) {
		l.add(p.child("image"), "%q is not a container image reference", s.Image)
	}
	if s.Replicas != nil && (*s.Replicas < 0 || *s.Replicas > MaxReplicas) {
		l.add(p.child("replicas"), "%d is out of range: must be 0 to %d", *s.Replicas, MaxReplicas)
	}
	if as := s.Autoscaling; as != nil {
		ap := p.child("autoscaling")
		if as.MinReplicas < 1 {
			l.add(ap.child("minReplicas"), "%d is too small: must be at least 1 (with no task running there is no traffic to scale on)", as.MinReplicas)
		}
		if as.MaxReplicas > MaxReplicas {
			l.add(ap.child("maxReplicas"), "%d is too large: at most %d", as.MaxReplicas, MaxReplicas)
		}
		if as.MinReplicas > as.MaxReplicas {
			l.add(ap.child("maxReplicas"), "%d is less than minReplicas %d", as.MaxReplicas, as.MinReplicas)
		}
		if as.TargetInvocationsPerReplicaPerMinute < 1 {
			l.add(ap.child("targetInvocationsPerReplicaPerMinute"), "%d must be at least 1", as.TargetInvocationsPerReplicaPerMinute)
		}
	}
	validateResources(l, p.child("resources"), s.Resources)
	validateRoute(l, p.child("route"), s.Route)
	validateAllowlist(l, p.child("allowlist"), s.Allowlist)
	validateDatabricks(l, p.child("databricks"), &s.Databricks)
	if id := s.Identity; id != nil {
		ip := p.child("identity")
		seen := map[string]bool{}
		for i, d := range id.AllowedEmailDomains {
			dp := ip.child("allowedEmailDomains").index(i)
			switch {
			case !isHostname(d):
				l.add(dp, "%q is not a domain name", d)
			case seen[d]:
				l.add(dp, "%q is listed twice", d)
			}
			seen[d] = true
		}
		if lo := id.Lockout; lo != nil {
			lp := ip.child("lockout")
			if lo.Failures < 1 || lo.Failures > 100 {
				l.add(lp.child("failures"), "%d is out of range: must be 1 to 100", lo.Failures)
			}
			if lo.Window.Duration <= 0 || lo.Window.Duration > 24*time.Hour {
				l.add(lp.child("window"), "%s is out of range: must be more than 0 and at most 24h", lo.Window)
			}
			if lo.Duration.Duration <= 0 || lo.Duration.Duration > 30*24*time.Hour {
				l.add(lp.child("duration"), "%s is out of range: must be more than 0 and at most 30d", lo.Duration)
			}
		}
	}
	if ttl := s.Session.TTL.Duration; ttl < MinSessionTTL || ttl > MaxSessionTTL {
		l.add(p.child("session").child("ttl"), "%s is out of range: must be 5m to 7d", s.Session.TTL)
	}
	validateEnv(l, p, s)
	if s.DeletionPolicy != DeletionDelete && s.DeletionPolicy != DeletionRetain {
		l.add(p.child("deletionPolicy"), "%q is not one of Delete, Retain", s.DeletionPolicy)
	}
}

func validateResources(l *errorList, p path, r Resources) {
	if _, ok := fargateSizes[r.CPU]; !ok {
		l.add(p.child("cpu"), "%d is not a Fargate CPU size: one of 256, 512, 1024, 2048, 4096, 8192, 16384", r.CPU)
		return
	}
	if !fargateMemoryOK(r.CPU, r.Memory) {
		fr := fargateSizes[r.CPU]
		allowed := fmt.Sprintf("%d to %d in steps of %d", fr.min, fr.max, fr.step)
		if fr.step == 0 {
			allowed = "512, 1024 or 2048"
		}
		l.add(p.child("memory"), "%d MiB is not valid with cpu %d on Fargate: use %s", r.Memory, r.CPU, allowed)
	}
}

func validateRoute(l *errorList, p path, r Route) {
	if r.Host != "" {
		hp := p.child("host")
		switch {
		case strings.ContainsAny(r.Host, "*?"):
			l.add(hp, "%q holds a wildcard: name one host", r.Host)
		case strings.Contains(r.Host, ":"):
			l.add(hp, "%q holds a port or scheme: write the host name alone", r.Host)
		case len(r.Host) > maxHostLen:
			l.add(hp, "%q is longer than %d characters", r.Host, maxHostLen)
		case !isHostname(r.Host):
			hint := ""
			if low := strings.ToLower(r.Host); low != r.Host && isHostname(low) {
				hint = fmt.Sprintf("; did you mean %q?", low)
			}
			l.add(hp, "%q is not a valid host name%s", r.Host, hint)
		}
	}
	pp := p.child("pathPrefix")
	switch v := r.PathPrefix; {
	case !strings.HasPrefix(v, "/"):
		l.add(pp, "%q must start with \"/\"", v)
	case strings.ContainsAny(v, "?#"):
		l.add(pp, "%q holds a query or fragment: write the path alone", v)
	case strings.ContainsAny(v, "*"):
		l.add(pp, "%q holds a wildcard: ALB path patterns treat * and ? as wildcards", v)
	case len(v) > maxPathPrefixLen:
		l.add(pp, "%q is longer than %d characters", v, maxPathPrefixLen)
	case v != "/" && strings.HasSuffix(v, "/"):
		l.add(pp, "%q ends with \"/\": write %q", v, strings.TrimRight(v, "/"))
	case strings.Contains(v, "//") || slices.Contains(strings.Split(v, "/"), "..") || slices.Contains(strings.Split(v, "/"), "."):
		l.add(pp, "%q is not a clean path (no empty, \".\" or \"..\" segments)", v)
	case !pathPrefixRE.MatchString(v):
		l.add(pp, "%q holds characters ALB path patterns do not accept: use letters, digits and . _ ~ / @ : + $ -", v)
	}
}

func validateAllowlist(l *errorList, p path, cidrs []string) {
	if len(cidrs) == 0 {
		l.add(p, "is required: list the source CIDRs allowed in (write \"0.0.0.0/0\" to open the app to every IPv4 address)")
		return
	}
	if len(cidrs) > MaxAllowlist {
		l.add(p, "has %d entries: at most %d", len(cidrs), MaxAllowlist)
	}
	seen := map[netip.Prefix]int{}
	for i, c := range cidrs {
		ip := p.index(i)
		pre, err := netip.ParsePrefix(c)
		if err != nil {
			if addr, aerr := netip.ParseAddr(c); aerr == nil {
				l.add(ip, "%q is an address, not a CIDR: write %q", c, netip.PrefixFrom(addr, addr.BitLen()).String())
			} else {
				l.add(ip, "%q is not a valid CIDR", c)
			}
			continue
		}
		if pre.Addr().Is4In6() {
			l.add(ip, "%q is an IPv4-mapped IPv6 prefix: write the IPv4 CIDR", c)
			continue
		}
		if m := pre.Masked(); m != pre {
			l.add(ip, "%q has host bits set: write %q", c, m.String())
			continue
		}
		if pre.String() != c {
			l.add(ip, "%q is not in canonical form: write %q", c, pre.String())
			continue
		}
		if j, dup := seen[pre]; dup {
			l.add(ip, "%q duplicates allowlist[%d]", c, j)
			continue
		}
		seen[pre] = i
	}
}

func validateDatabricks(l *errorList, p path, d *Databricks) {
	hp := p.child("host")
	if d.Host == "" {
		l.add(hp, "is required: the workspace URL, e.g. https://dbc-1234abcd.cloud.databricks.com")
	} else if u, err := url.Parse(d.Host); err != nil || u.Host == "" {
		l.add(hp, "%q is not a URL", d.Host)
	} else {
		switch {
		case u.Scheme != "https":
			l.add(hp, "%q must use https", d.Host)
		case u.User != nil:
			l.add(hp, "%q must not carry user information", d.Host)
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			l.add(hp, "%q must have no path, query or fragment: write %q", d.Host, "https://"+u.Host)
		case !isHostname(u.Hostname()):
			l.add(hp, "%q does not name a valid host", d.Host)
		}
	}
	ep := p.child("servingEndpoint")
	switch {
	case d.ServingEndpoint == "":
		l.add(ep, "is required: the Model Serving endpoint name")
	case len(d.ServingEndpoint) > maxServingEndpoint || !endpointNameRE.MatchString(d.ServingEndpoint):
		l.add(ep, "%q is not a serving endpoint name: at most 63 letters, digits, '-' and '_'", d.ServingEndpoint)
	}
	op := p.child("oauth")
	o := &d.OAuth
	switch o.Integration {
	case IntegrationManaged:
		if o.IntegrationID != "" {
			l.add(op.child("integrationId"), "must be empty with integration: managed (the controller creates the integration)")
		}
		if o.ClientSecretRef != "" {
			l.add(op.child("clientSecretRef"), "must be empty with integration: managed (the controller stores the secret)")
		}
	case IntegrationExisting:
		if o.IntegrationID == "" {
			l.add(op.child("integrationId"), "is required with integration: existing")
		}
		if o.ClientSecretRef == "" {
			l.add(op.child("clientSecretRef"), "is required with integration: existing: the Secrets Manager name or ARN of the client secret")
		} else {
			validateSecretRef(l, op.child("clientSecretRef"), o.ClientSecretRef)
		}
	default:
		l.add(op.child("integration"), "%q is not one of managed, existing", o.Integration)
	}
	seen := map[string]bool{}
	for i, s := range o.Scopes {
		sp := op.child("scopes").index(i)
		switch {
		case !scopeRE.MatchString(s):
			l.add(sp, "%q is not a scope", s)
		case seen[s]:
			l.add(sp, "%q is listed twice", s)
		}
		seen[s] = true
	}
	if !seen["openid"] {
		l.add(op.child("scopes"), "must include \"openid\": login needs an ID token")
	}
}

func validateEnv(l *errorList, p path, s *ServingAppSpec) {
	for _, k := range sortedKeys(s.Env) {
		validateEnvName(l, p.child("env").key(k), k)
	}
	for _, k := range sortedKeys(s.Secrets) {
		kp := p.child("secrets").key(k)
		validateEnvName(l, kp, k)
		if _, dup := s.Env[k]; dup {
			l.add(kp, "%q is also set in spec.env: a variable comes from one place", k)
		}
		validateSecretRef(l, kp, s.Secrets[k])
	}
}

func validateEnvName(l *errorList, p path, k string) {
	switch {
	case !envNameRE.MatchString(k):
		l.add(p, "%q is not a valid environment variable name: letters, digits and '_', not starting with a digit", k)
	case appenv.Reserved(k):
		l.add(p, "%q is reserved: the controller sets PORT and every %s* variable", k, appenv.Prefix)
	}
}

func validateSecretRef(l *errorList, p path, ref string) {
	switch {
	case ref == "":
		l.add(p, "is empty: give a Secrets Manager secret name or ARN")
	case strings.HasPrefix(ref, "arn:"):
		parts := strings.SplitN(ref, ":", 7)
		if len(parts) != 7 || parts[2] != "secretsmanager" || parts[5] != "secret" || parts[6] == "" {
			l.add(p, "%q is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)", ref)
		}
	case len(ref) > maxSecretRefLen || !secretNameRE.MatchString(ref):
		l.add(p, "%q is not a Secrets Manager secret name", ref)
	}
}

// isHostname reports whether s is a lowercase DNS name of one or more labels.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !hostLabelRE.MatchString(label) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
