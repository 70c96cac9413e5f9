package aws

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// imdsStandIn serves IMDSv2: a session token from PUT /latest/api/token, metadata only with it.
func imdsStandIn(t *testing.T, meta map[string]string) *httptest.Server {
	t.Helper()
	const token = "session-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "no ttl", http.StatusBadRequest)
				return
			}
			w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
			_, _ = w.Write([]byte(token))
			return
		}
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			http.Error(w, "IMDSv1 refused", http.StatusUnauthorized)
			return
		}
		v, ok := meta[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(v))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestNodeIdentityComesFromIMDSv2: the bootstrap learns its instance, address, zone and Node name with
// a session token (an IMDS that refuses v1 requests answers it). The Node is named after the whole
// private DNS name and its providerID is aws:///zone/instance, as aws-cloud-controller-manager
// requires.
func TestNodeIdentityComesFromIMDSv2(t *testing.T) {
	srv := imdsStandIn(t, map[string]string{
		"/latest/meta-data/instance-id":                 "i-0123456789abcdef0",
		"/latest/meta-data/local-ipv4":                  "172.20.0.10",
		"/latest/meta-data/local-hostname":              "IP-172-20-0-10.eu-west-1.compute.internal",
		"/latest/meta-data/placement/availability-zone": "eu-west-1b",
	})
	id, err := ReadIdentity(context.Background(), imds.New(imds.Options{Endpoint: srv.URL, ClientEnableState: imds.ClientEnabled}))
	if err != nil {
		t.Fatal(err)
	}
	if id.InstanceID != "i-0123456789abcdef0" || id.PrivateIP != "172.20.0.10" || id.Hostname != "ip-172-20-0-10.eu-west-1.compute.internal" || id.ProviderID() != "aws:///eu-west-1b/i-0123456789abcdef0" {
		t.Errorf("identity %+v", id)
	}
}
