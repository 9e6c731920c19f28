package local

import (
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/controller/usage"
)

// The platform is what the controller, the OAuth registrar and the usage
// engine take it for: the runner finds autoscaling and lockout by type
// assertion, so a changed signature would otherwise turn them off silently.
var (
	_ controller.Platform = (*Platform)(nil)
	_ oauth.SecretStore   = (*Platform)(nil)
	_ usage.Scaler        = (*Platform)(nil)
	_ usage.Blocker       = (*Platform)(nil)
)
