# The shared Application Load Balancer. Terraform owns the load balancer and
# its listeners; the controller owns the listener rules (host + path +
# source-IP allowlist per app, tagged servingapp.io/managed-by) in the
# priority band of local.rule_priorities. Anything no rule matches gets 404.

locals {
  certificate_arn = var.certificate_arn != "" ? var.certificate_arn : one(aws_acm_certificate_validation.apps[*].certificate_arn)

  rule_priorities = { min = 1000, max = 49000 }
}

resource "aws_lb" "apps" {
  name                       = "${var.name}-apps"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  subnets                    = local.alb_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = !var.allow_destroy
  # Model invocations may run 297 s and stream server-sent events.
  idle_timeout = 300

  tags = { Name = "${var.name}-apps" }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.apps.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = local.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  lifecycle {
    precondition {
      condition     = var.certificate_arn != "" || var.route53_zone_id != ""
      error_message = "The HTTPS listener needs a certificate: set certificate_arn, or route53_zone_id so Terraform can request and validate one."
    }
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.apps.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

# --- Security group: rules are separate resources so groups can refer to
# each other without cycles. ---

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "servingapp app load balancer: HTTPS (and HTTP for the redirect) from alb_ingress_cidrs"
  vpc_id      = local.vpc_id

  tags = { Name = "${var.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.alb_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = can(regex(":", each.value)) ? null : each.value
  cidr_ipv6         = can(regex(":", each.value)) ? each.value : null
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each          = toset(var.alb_ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTP, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = can(regex(":", each.value)) ? null : each.value
  cidr_ipv6         = can(regex(":", each.value)) ? each.value : null
}

resource "aws_vpc_security_group_egress_rule" "alb_to_apps" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the web app tasks"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.apps.id
}
