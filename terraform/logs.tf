# CloudWatch log groups: the controller, the NATS nodes, and the web apps
# (aws.logGroup in the controller config; one stream per task).

resource "aws_cloudwatch_log_group" "this" {
  for_each          = toset(["controller", "nats", "apps"])
  name              = "/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
}
