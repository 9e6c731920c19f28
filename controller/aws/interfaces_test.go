package aws

import (
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/controller/usage"
)

// The platform is what the controller, the OAuth registrar and the usage
// engine (autoscaling, lockout) take it for.
var (
	_ controller.Platform        = (*Platform)(nil)
	_ controller.OrphanCollector = (*Platform)(nil)
	_ oauth.SecretStore          = (*Platform)(nil)
	_ usage.Scaler               = (*Platform)(nil)
	_ usage.Blocker              = (*Platform)(nil)
)
