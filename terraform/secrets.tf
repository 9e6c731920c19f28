# Secrets Manager secrets Terraform owns. Naming bands:
#   <name>/...           readable by the controller and the web apps' execution
#                        role (except the account service principal, which only
#                        the controller reads). People keep clientSecretRef
#                        secrets here too, e.g. <name>/shared/....
#   <name>/apps/...      the only band the controller creates and changes
#                        secrets in (session keys, OAuth client secrets), tagged
#                        servingapp.io/managed-by; Terraform puts nothing there.
#   <name>-platform/...  read only by the platform execution role when the
#                        controller and NATS tasks start; no app can name them.

locals {
  secret_recovery_days = var.allow_destroy ? 0 : 7
}

resource "aws_secretsmanager_secret" "databricks_account" {
  name                    = "${local.secret_prefix}databricks/account-sp"
  description             = "Databricks account service principal (client_id, client_secret) the controller uses for OAuth app integrations"
  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret_version" "databricks_account" {
  secret_id = aws_secretsmanager_secret.databricks_account.id
  secret_string = jsonencode({
    client_id     = var.databricks_client_id
    client_secret = var.databricks_client_secret
  })
}

resource "aws_secretsmanager_secret" "nats_webapp_creds" {
  name                    = "${local.secret_prefix}nats/webapp-creds"
  description             = "NATS credentials of the web apps (role webapp); the controller passes this secret to every app task as SERVINGAPP_NATS_CREDS"
  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret_version" "nats_webapp_creds" {
  secret_id     = aws_secretsmanager_secret.nats_webapp_creds.id
  secret_string = local.nats_auth.users.webapp.creds
}

resource "aws_secretsmanager_secret" "nats_controller_creds" {
  name                    = "${local.platform_secret_prefix}nats/controller-creds"
  description             = "NATS credentials of the controller (role controller)"
  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret_version" "nats_controller_creds" {
  secret_id     = aws_secretsmanager_secret.nats_controller_creds.id
  secret_string = local.nats_auth.users.controller.creds
}

resource "aws_secretsmanager_secret" "nats_admin_creds" {
  name                    = "${local.platform_secret_prefix}nats/admin-creds"
  description             = "NATS credentials for admins running servingctl (role admin)"
  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret_version" "nats_admin_creds" {
  secret_id     = aws_secretsmanager_secret.nats_admin_creds.id
  secret_string = local.nats_auth.users.admin.creds
}

resource "aws_secretsmanager_secret" "nats_server" {
  name                    = "${local.platform_secret_prefix}nats/server"
  description             = "NATS server configuration per node and its TLS key and certificates"
  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret_version" "nats_server" {
  secret_id = aws_secretsmanager_secret.nats_server.id
  secret_string = jsonencode(merge(
    { for node in local.nats_nodes : "conf_${node}" => local.nats_server_config[node] },
    {
      server_cert = tls_locally_signed_cert.nats_server.cert_pem
      server_key  = tls_private_key.nats_server.private_key_pem
      ca_cert     = tls_self_signed_cert.nats_ca.cert_pem
    },
  ))
}

# A copy of the NATS auth bundle (operator, account and user keys), so
# deploy.sh can restore terraform/nats-auth.json on another machine instead
# of creating new keys, which would orphan the JetStream data stored under
# the account's public key.
resource "aws_secretsmanager_secret" "nats_auth_bundle" {
  name                    = "${local.platform_secret_prefix}nats/auth-bundle"
  description             = "Backup of terraform/nats-auth.json (NATS operator, account and user keys)"
  recovery_window_in_days = local.secret_recovery_days
}

resource "aws_secretsmanager_secret_version" "nats_auth_bundle" {
  secret_id     = aws_secretsmanager_secret.nats_auth_bundle.id
  secret_string = local.nats_auth_json
}
