package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// instance is what the instance metadata service tells one node container about itself.
type instance struct {
	ID       string
	Zone     string
	Region   string
	IP       string // the container's address: both local-ipv4 and public-ipv4
	Hostname string // ip-A-B-C-D.REGION.compute.internal
	Role     string // the instance profile's role, whose credentials the node gets
	UserData []byte
}

// imds is a stand-in for EC2's instance metadata service (IMDSv2 only: a PUT for a token first, then
// GETs with it). It answers each caller as the instance whose container has the caller's address.
type imds struct {
	mu     sync.Mutex
	byIP   map[string]*instance
	tokens map[string]time.Time
}

func newIMDS() *imds { return &imds{byIP: map[string]*instance{}, tokens: map[string]time.Time{}} }

func (s *imds) add(i *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byIP[i.IP] = i
}

func (s *imds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.mu.Lock()
	inst := s.byIP[host]
	s.mu.Unlock()
	if inst == nil {
		http.Error(w, "no instance has address "+host, http.StatusNotFound)
		return
	}
	if r.URL.Path == "/latest/api/token" {
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if r.Method != http.MethodPut || err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "IMDSv2: PUT with X-aws-ec2-metadata-token-ttl-seconds 1..21600", http.StatusBadRequest)
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := hex.EncodeToString(b)
		s.mu.Lock()
		s.tokens[tok] = time.Now().Add(time.Duration(ttl) * time.Second)
		s.mu.Unlock()
		// The SDK reads the token's lifetime from this header, as EC2 sends it.
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", strconv.Itoa(ttl))
		_, _ = w.Write([]byte(tok))
		return
	}
	s.mu.Lock()
	exp, ok := s.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
	s.mu.Unlock()
	if !ok || time.Now().After(exp) {
		// IMDSv2 only (HttpTokens=required, as the launch templates ask).
		http.Error(w, "missing or expired IMDSv2 token", http.StatusUnauthorized)
		return
	}
	body, found := inst.answer(strings.TrimPrefix(r.URL.Path, "/latest/"))
	if !found {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(body)
}

// answer is the metadata at path (below /latest/).
func (i *instance) answer(path string) ([]byte, bool) {
	creds := "meta-data/iam/security-credentials/"
	switch path {
	case "user-data":
		return i.UserData, true
	case creds:
		return []byte(i.Role), true
	case creds + i.Role:
		// Any key works with moto (IAM is not enforced in the rehearsal); the shape is EC2's.
		b, _ := json.Marshal(map[string]string{
			"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAREHEARSAL" + strings.ToUpper(i.ID[len(i.ID)-6:]),
			"SecretAccessKey": "rehearsal", "Token": "rehearsal-" + i.ID,
			"LastUpdated": time.Now().UTC().Format(time.RFC3339), "Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		})
		return b, true
	case "dynamic/instance-identity/document":
		b, _ := json.Marshal(map[string]string{"instanceId": i.ID, "region": i.Region, "availabilityZone": i.Zone, "privateIp": i.IP})
		return b, true
	}
	v, ok := map[string]string{
		"meta-data/instance-id":                 i.ID,
		"meta-data/local-ipv4":                  i.IP,
		"meta-data/public-ipv4":                 i.IP,
		"meta-data/local-hostname":              i.Hostname,
		"meta-data/hostname":                    i.Hostname,
		"meta-data/placement/availability-zone": i.Zone,
		"meta-data/placement/region":            i.Region,
		"meta-data/services/domain":             "amazonaws.com",
		"meta-data/iam/info":                    fmt.Sprintf(`{"Code":"Success","InstanceProfileArn":"arn:aws:iam::123456789012:instance-profile/%s"}`, i.Role),
	}[path]
	return []byte(v), ok
}
