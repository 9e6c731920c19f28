package awsemu

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

func TestEncodeJSON(t *testing.T) {
	weird := "quote\" backslash\\ newline\n tab\t bell\a unicode é"
	v := ecstypes.ServiceEvent{Id: aws.String(weird), CreatedAt: aws.Time(time.UnixMilli(1700000000123)), Message: nil}
	var got map[string]any
	if err := json.Unmarshal(encodeJSON(&v, true), &got); err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	if got["id"] != weird || got["createdAt"] != 1700000000.123 {
		t.Errorf("decoded %v", got)
	}
	if _, ok := got["message"]; ok {
		t.Errorf("nil member encoded: %v", got)
	}
}

func TestDecodeQuery(t *testing.T) {
	form, _ := url.ParseQuery("Action=CreateRule&Version=2015-12-01&ListenerArn=arn%3Al&Priority=7" +
		"&Conditions.member.2.Field=source-ip&Conditions.member.2.SourceIpConfig.Values.member.1=10.0.0.0%2F8" +
		"&Conditions.member.1.Field=host-header&Conditions.member.1.HostHeaderConfig.Values.member.2=b&Conditions.member.1.HostHeaderConfig.Values.member.1=a" +
		"&Tags=")
	var in elb.CreateRuleInput
	if err := decodeQuery(form, &in); err != nil {
		t.Fatal(err)
	}
	if aws.ToString(in.ListenerArn) != "arn:l" || aws.ToInt32(in.Priority) != 7 || len(in.Conditions) != 2 ||
		!slices.Equal(in.Conditions[0].HostHeaderConfig.Values, []string{"a", "b"}) ||
		in.Conditions[1].SourceIpConfig.Values[0] != "10.0.0.0/8" || in.Tags == nil || len(in.Tags) != 0 {
		t.Errorf("decoded %+v", in)
	}
	if err := decodeQuery(url.Values{"Priority": {"x"}}, &in); err == nil {
		t.Errorf("non-numeric Priority accepted")
	}
}

func TestEncodeQueryResult(t *testing.T) {
	out := &elb.DescribeRulesOutput{NextMarker: aws.String("m&<")}
	xml := string(wrapQueryResponse("DescribeRules", elbv2XMLNS, "req-1", encodeQueryResult(out)))
	for _, want := range []string{"<DescribeRulesResponse xmlns=", "<DescribeRulesResult><NextMarker>m&amp;&lt;</NextMarker></DescribeRulesResult>", "<RequestId>req-1</RequestId>"} {
		if !strings.Contains(xml, want) {
			t.Errorf("%s lacks %s", xml, want)
		}
	}
}
