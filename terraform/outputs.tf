# What deploy.sh, docs/deploy-aws.md and admins need after an apply.

output "aws_region" {
  description = "Region of the installation."
  value       = var.aws_region
}

output "cluster_name" {
  description = "ECS cluster of the controller, NATS and the apps."
  value       = aws_ecs_cluster.this.name
}

output "controller_service_name" {
  description = "ECS service of the controller (deploy.sh waits for it)."
  value       = aws_ecs_service.controller.name
}

output "nats_service_names" {
  description = "ECS services of the three NATS nodes."
  value       = [for s in aws_ecs_service.nats : s.name]
}

output "controller_repository_url" {
  description = "ECR repository of the controller image."
  value       = aws_ecr_repository.this["controller"].repository_url
}

output "webapp_repository_url" {
  description = "ECR repository of the web app image."
  value       = aws_ecr_repository.this["webapp"].repository_url
}

output "alb_dns_name" {
  description = "DNS name of the app load balancer: point <app_domain> and *.<app_domain> at it (alias or CNAME) when Terraform does not manage the zone."
  value       = aws_lb.apps.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone id of the app load balancer, for alias records."
  value       = aws_lb.apps.zone_id
}

output "https_listener_arn" {
  description = "HTTPS listener the controller adds app rules to."
  value       = aws_lb_listener.https.arn
}

output "nats_admin_url" {
  description = "NATS URL for servingctl --server (internal NLB, reachable from admin_allowlist)."
  value       = local.nats_admin_url
}

output "nats_client_url" {
  description = "NATS URL the controller and the web apps use inside the VPC."
  value       = local.nats_client_url
}

output "nats_admin_creds_secret_arn" {
  description = "Secret holding the admin NATS credentials (a .creds file) for servingctl --creds."
  value       = aws_secretsmanager_secret.nats_admin_creds.arn
}

output "nats_ca_certificate" {
  description = "CA certificate of the NATS cluster (PEM); clients must trust it."
  value       = tls_self_signed_cert.nats_ca.cert_pem
}

output "nats_auth_bundle_secret_arn" {
  description = "Backup of terraform/nats-auth.json; deploy.sh restores the file from it when missing."
  value       = aws_secretsmanager_secret.nats_auth_bundle.arn
}

output "databricks_credentials_secret_arn" {
  description = "Secret with the Databricks account service principal's client_id and client_secret."
  value       = aws_secretsmanager_secret.databricks_account.arn
}

output "controller_config" {
  description = "The controller configuration as rendered (also in the SSM parameter controller_config_parameter)."
  value       = local.controller_config_yaml
}

output "controller_config_parameter" {
  description = "SSM parameter holding the controller configuration."
  value       = aws_ssm_parameter.controller_config.name
}

output "controller_id" {
  description = "Controller id: the servingapp.io/managed-by tag value on everything the controller creates."
  value       = local.controller_id
}

output "log_groups" {
  description = "CloudWatch log groups by component."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.name }
}

output "vpc_id" {
  description = "VPC of the installation."
  value       = local.vpc_id
}
