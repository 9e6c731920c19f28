package aws

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/servingapp/servingapp/controller/model"
)

// AWS name limits the derived names must respect.
const (
	maxECSName         = 255 // ECS service names and task definition families
	maxTargetGroupName = 32
	maxClientToken     = 36
	tgNameHashLen      = 8
)

// names are the deterministic AWS names of one app's resources. They are a
// pure function of the controller id and the app's namespace and name, so a
// restarted controller finds what an earlier one created.
type names struct {
	// Service names the ECS service and the task definition family:
	// "<controller>_<namespace>_<name>". The underscore cannot occur in a
	// namespace or name (DNS labels), so different apps never share a name.
	Service string
	// TargetGroup is "sa-<namespace>-<name>" cut to fit, then "-<hash>" of
	// the controller id, namespace and name: at most 32 characters.
	TargetGroup string
	// SessionKey is the secret holding the app's session key:
	// "<secretPrefix><namespace>/<name>/session-key".
	SessionKey string
	// LogPrefix is the awslogs stream prefix, "<namespace>/<name>".
	LogPrefix string
}

func namesFor(controllerID, secretPrefix string, ref model.Ref) names {
	return names{
		Service:     serviceName(controllerID, ref),
		TargetGroup: targetGroupName(controllerID, ref),
		SessionKey:  secretPrefix + ref.Namespace + "/" + ref.Name + "/session-key",
		LogPrefix:   ref.Namespace + "/" + ref.Name,
	}
}

// serviceName is the ECS service name and task definition family of ref.
// Characters ECS does not allow in the controller id become '-'; a name
// longer than ECS allows keeps its start and ends in a hash of the whole.
func serviceName(controllerID string, ref model.Ref) string {
	name := ecsSafe(controllerID) + "_" + ref.Namespace + "_" + ref.Name
	if len(name) <= maxECSName {
		return name
	}
	h := shortHash(controllerID+"/"+ref.Namespace+"/"+ref.Name, 16)
	return name[:maxECSName-len(h)-1] + "_" + h
}

// servicePrefix starts the name of every ECS service this controller creates.
func servicePrefix(controllerID string) string { return ecsSafe(controllerID) + "_" }

func ecsSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, s)
}

// targetGroupName is the target group name of ref. The readable part helps
// people in the console; the hash makes it unique per controller and app.
func targetGroupName(controllerID string, ref model.Ref) string {
	const prefix = "sa-"
	h := shortHash(controllerID+"/"+ref.Namespace+"/"+ref.Name, tgNameHashLen)
	room := maxTargetGroupName - len(prefix) - 1 - len(h)
	readable := ref.Namespace + "-" + ref.Name
	if len(readable) > room {
		readable = readable[:room]
	}
	readable = strings.Trim(readable, "-")
	return prefix + readable + "-" + h
}

// clientToken is CreateService's idempotency token: the same app generation
// always sends the same token, so an SDK retry after a lost response finds
// the service the first attempt created.
func clientToken(uid string, generation int64) string {
	return shortHash(uid+"/"+strconv.FormatInt(generation, 10), 32)
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// refOf parses the app tag "<namespace>/<name>".
func refOf(app, uid string) (model.Ref, bool) {
	ns, name, ok := strings.Cut(app, "/")
	if !ok || ns == "" || name == "" {
		return model.Ref{}, false
	}
	return model.Ref{Namespace: ns, Name: name, UID: uid}, true
}
