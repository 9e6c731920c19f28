# DNS for the app hosts and the listener's certificate, when a Route 53 zone
# is given: <app_domain> and *.<app_domain> point at the ALB, and without
# certificate_arn an ACM certificate for them (plus *.<namespace>.<app_domain>
# per certificate_namespaces) is requested and validated through the zone.

locals {
  manage_dns         = var.route53_zone_id != ""
  create_certificate = var.certificate_arn == "" && local.manage_dns

  certificate_names = concat(
    ["*.${var.app_domain}"],
    [for ns in var.certificate_namespaces : "*.${ns}.${var.app_domain}"],
  )
}

resource "aws_acm_certificate" "apps" {
  count                     = local.create_certificate ? 1 : 0
  domain_name               = var.app_domain
  subject_alternative_names = local.certificate_names
  validation_method         = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "certificate_validation" {
  # A name and its wildcard share one validation record, so they are keyed
  # together (by domain names, which are known at plan time).
  for_each = {
    for o in flatten(aws_acm_certificate.apps[*].domain_validation_options) : trimprefix(o.domain_name, "*.") => o...
  }
  zone_id         = var.route53_zone_id
  name            = each.value[0].resource_record_name
  type            = each.value[0].resource_record_type
  records         = [each.value[0].resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "apps" {
  count                   = local.create_certificate ? 1 : 0
  certificate_arn         = aws_acm_certificate.apps[0].arn
  validation_record_fqdns = [for r in aws_route53_record.certificate_validation : r.fqdn]
}

resource "aws_route53_record" "apps" {
  for_each = local.manage_dns ? toset([var.app_domain, "*.${var.app_domain}"]) : toset([])
  zone_id  = var.route53_zone_id
  name     = each.value
  type     = "A"

  alias {
    name                   = aws_lb.apps.dns_name
    zone_id                = aws_lb.apps.zone_id
    evaluate_target_health = false
  }
}
