package main

import (
	"context"
	"net/http/httptest"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	ec2imds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	kdaws "github.com/kubedirect/kubedirect/provision/aws"
)

// TestIMDSStandInAnswersTheSDKsIMDSv2Client: the node's bootstrap reads its identity through the
// SDK's IMDS client (token first) from the stand-in, as the caller's instance. Before the stand-in
// echoed the token's TTL header the SDK fell back to token-less requests, which IMDSv2 refuses (401).
func TestIMDSStandInAnswersTheSDKsIMDSv2Client(t *testing.T) {
	s := newIMDS()
	s.add(&instance{ID: "i-0123456789abcdef0", Zone: "eu-west-1a", Region: "eu-west-1", IP: "127.0.0.1",
		Hostname: "ip-127-0-0-1.eu-west-1.compute.internal", Role: "kubedirect-x-nodes"})
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := ec2imds.New(ec2imds.Options{Endpoint: srv.URL, EnableFallback: awssdk.FalseTernary /* IMDSv2 only */})
	id, err := kdaws.ReadIdentity(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := kdaws.Identity{InstanceID: "i-0123456789abcdef0", PrivateIP: "127.0.0.1", Hostname: "ip-127-0-0-1.eu-west-1.compute.internal", PublicIP: "127.0.0.1", Zone: "eu-west-1a"}
	if *id != want {
		t.Errorf("identity %+v, want %+v", *id, want)
	}
}
