package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// IAM roles of the cluster's instances.
const (
	roleControlPlane = "control-plane"
	roleNodes        = "nodes"
)

func roleOf(g spec.NodeGroup) string {
	if g.Role == spec.RoleControlPlane {
		return roleControlPlane
	}
	return roleNodes
}

// policyDocument is an IAM policy document.
type policyDocument struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string                           `json:"Sid,omitempty"`
	Effect    string                           `json:"Effect"`
	Action    stringList                       `json:"Action"`
	Resource  stringList                       `json:"Resource,omitempty"`
	Principal map[string]string                `json:"Principal,omitempty"`
	Condition map[string]map[string]stringList `json:"Condition,omitempty"`
}

// stringList is a policy element that may be one string or a list of them.
type stringList []string

// MarshalJSON writes a single value as a plain string, as IAM itself does.
func (s stringList) MarshalJSON() ([]byte, error) {
	if len(s) == 1 {
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

// UnmarshalJSON accepts a string or a list of strings.
func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("decode policy element: %w", err)
	}
	*s = many
	return nil
}

// summary is a statement on one line, as the plan prints and compare checks it.
func (st statement) summary() string {
	s := strings.ToLower(st.Effect) + " " + strings.Join(st.Action, ",")
	if len(st.Resource) > 0 {
		s += " on " + strings.Join(st.Resource, ",")
	}
	if svc := st.Principal["Service"]; svc != "" {
		s += " by " + svc
	}
	var conds []string
	for op, kv := range st.Condition {
		for k, v := range kv {
			conds = append(conds, fmt.Sprintf("%s %s %s", k, op, strings.Join(v, ",")))
		}
	}
	sort.Strings(conds)
	if len(conds) > 0 {
		s += " if " + strings.Join(conds, " and ")
	}
	return s
}

// trustPolicy lets EC2 instances assume the role.
var trustPolicy = policyDocument{Version: "2012-10-17", Statement: []statement{{
	Effect: "Allow", Action: stringList{"sts:AssumeRole"}, Principal: map[string]string{"Service": "ec2.amazonaws.com"},
}}}

// policy is the least privilege a node role needs:
//   - every node reads the bootstrap files (join token, CA certificate hash) of its cluster, and nothing
//     else of the state store;
//   - the control plane also reads the shared key pairs (pki/), writes the admin kubeconfig and the join
//     token, takes the init lock and writes the cluster marker (control-plane/), and keeps etcd
//     snapshots (backups/etcd/: put, list, delete); it runs aws-cloud-controller-manager
//     (cloudControllerStatements), whose ec2:DescribeInstances also finds the other control planes;
//   - in dsr mode a node turns off the source/destination check of its own instance, and only its own:
//     the condition aws:ARN = ${ec2:SourceInstanceARN} compares the instance being modified with the
//     instance whose role credentials sign the request (aws:ARN is the target resource's ARN; AWS
//     evaluates it for EC2 instance actions though its documentation does not list it), and the
//     instance must carry the cluster's tag as a second guard.
func (m *model) policy(role string) policyDocument {
	obj := func(file string) string { return "arn:aws:s3:::" + m.names.Bucket() + "/" + m.names.StateKey(file) }
	doc := policyDocument{Version: "2012-10-17"}
	read := stringList{obj(dirBootstrap + "*")}
	if role == roleControlPlane {
		read = append(read, obj(dirPKI+"*"), obj(dirControlPlane+"*"), obj(DirEtcdBackups+"*"))
	}
	doc.Statement = append(doc.Statement, statement{Sid: "ReadStateStore", Effect: "Allow", Action: stringList{"s3:GetObject"}, Resource: read})
	if role == roleControlPlane {
		// Publishes the kubeconfig, renews the join token, takes the init lock and writes the cluster
		// marker, saves etcd snapshots.
		doc.Statement = append(doc.Statement,
			statement{Sid: "WriteStateStore", Effect: "Allow", Action: stringList{"s3:PutObject"}, Resource: stringList{obj(FileKubeconfig), obj(FileToken), obj(dirControlPlane + "*"), obj(DirEtcdBackups + "*")}},
			statement{Sid: "PruneEtcdSnapshots", Effect: "Allow", Action: stringList{"s3:DeleteObject"}, Resource: stringList{obj(DirEtcdBackups + "*")}},
			statement{
				Sid: "ListEtcdSnapshots", Effect: "Allow", Action: stringList{"s3:ListBucket"}, Resource: stringList{"arn:aws:s3:::" + m.names.Bucket()},
				Condition: map[string]map[string]stringList{"StringLike": {"s3:prefix": {m.names.StateKey(DirEtcdBackups) + "*"}}},
			},
		)
		// A replaced control plane finds the live ones with ec2:DescribeInstances, which the cloud
		// controller manager needs too.
		doc.Statement = append(doc.Statement, m.cloudControllerStatements()...)
	}
	if m.dsr {
		doc.Statement = append(doc.Statement, statement{
			Sid: "DisableOwnSourceDestCheck", Effect: "Allow",
			Action:   stringList{"ec2:ModifyInstanceAttribute"},
			Resource: stringList{"arn:aws:ec2:" + m.region + ":*:instance/*"},
			Condition: map[string]map[string]stringList{"StringEquals": {
				"aws:ARN":                       {"${ec2:SourceInstanceARN}"},
				"aws:ResourceTag/" + TagCluster: {m.names.Cluster},
			}},
		})
	}
	return doc
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func isCode(err error, codes ...string) bool {
	var api interface{ ErrorCode() string }
	if !errors.As(err, &api) {
		return false
	}
	for _, c := range codes {
		if api.ErrorCode() == c {
			return true
		}
	}
	return false
}

func iamTags(tags map[string]string) []iamtypes.Tag {
	out := make([]iamtypes.Tag, 0, len(tags))
	for _, k := range sortedKeys(tags) {
		out = append(out, iamtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// ownedByCluster checks an IAM resource's tags before kubedirect changes or deletes it.
func ownedByCluster(tags []iamtypes.Tag, cluster string) bool {
	for _, t := range tags {
		if aws.ToString(t.Key) == TagCluster && aws.ToString(t.Value) == cluster {
			return true
		}
	}
	return false
}

// roleTask is the IAM role of the control plane or of the other nodes, with its inline policy.
type roleTask struct {
	m    *model
	role string
}

func (t *roleTask) Key() string    { return "role/" + t.role }
func (t *roleTask) Kind() string   { return "IAMRole" }
func (t *roleTask) Name() string   { return t.m.names.Role(t.role) }
func (t *roleTask) Deps() []string { return nil }

func (t *roleTask) Desired(*run) []Field {
	f := []Field{{Name: "trust", Value: trustPolicy.Statement[0].summary(), Immutable: true}}
	for _, st := range t.m.policy(t.role).Statement {
		f = append(f, Field{Name: "policy", Value: st.summary()})
	}
	return f
}

func (t *roleTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(t.Name())})
	if isCode(err, "NoSuchEntity") {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !ownedByCluster(out.Role.Tags, t.m.names.Cluster) {
		return nil, fmt.Errorf("IAM role %s exists but is not tagged %s=%s", t.Name(), TagCluster, t.m.names.Cluster)
	}
	a := &actual{ID: t.Name(), Attrs: map[string]string{"arn": aws.ToString(out.Role.Arn)}}
	var trust policyDocument
	if doc, err := url.QueryUnescape(aws.ToString(out.Role.AssumeRolePolicyDocument)); err == nil && json.Unmarshal([]byte(doc), &trust) == nil && len(trust.Statement) == 1 {
		a.Fields = append(a.Fields, Field{Name: "trust", Value: trust.Statement[0].summary()})
	}
	pol, err := r.cl.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(t.Name()), PolicyName: aws.String(t.Name())})
	if isCode(err, "NoSuchEntity") {
		return a, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := url.QueryUnescape(aws.ToString(pol.PolicyDocument))
	if err != nil {
		return nil, fmt.Errorf("decode policy of IAM role %s: %w", t.Name(), err)
	}
	var p policyDocument
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("decode policy of IAM role %s: %w", t.Name(), err)
	}
	for _, st := range p.Statement {
		a.Fields = append(a.Fields, Field{Name: "policy", Value: st.summary()})
	}
	return a, nil
}

func (t *roleTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	if a == nil {
		out, err := r.cl.IAM.CreateRole(ctx, &iam.CreateRoleInput{
			RoleName: aws.String(t.Name()), AssumeRolePolicyDocument: aws.String(mustJSON(trustPolicy)),
			Description: aws.String("kubedirect " + t.role + " of cluster " + t.m.names.Cluster), Tags: iamTags(t.m.tags("")),
		})
		if err != nil {
			return nil, err
		}
		a = &actual{ID: t.Name(), Attrs: map[string]string{"arn": aws.ToString(out.Role.Arn)}}
	}
	if _, err := r.cl.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(t.Name()), PolicyName: aws.String(t.Name()), PolicyDocument: aws.String(mustJSON(t.m.policy(t.role)))}); err != nil {
		return nil, err
	}
	return &actual{ID: a.ID, Attrs: a.Attrs, Fields: t.Desired(r)}, nil
}

// instanceProfileTask is the instance profile that gives a role to instances.
type instanceProfileTask struct {
	m    *model
	role string
}

func (t *instanceProfileTask) Key() string    { return "profile/" + t.role }
func (t *instanceProfileTask) Kind() string   { return "InstanceProfile" }
func (t *instanceProfileTask) Name() string   { return t.m.names.Role(t.role) }
func (t *instanceProfileTask) Deps() []string { return []string{"role/" + t.role} }

func (t *instanceProfileTask) Desired(*run) []Field {
	return []Field{{Name: "role", Value: t.m.names.Role(t.role)}}
}

func (t *instanceProfileTask) Find(ctx context.Context, r *run) (*actual, error) {
	out, err := r.cl.IAM.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(t.Name())})
	if isCode(err, "NoSuchEntity") {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a := &actual{ID: t.Name(), Attrs: map[string]string{"arn": aws.ToString(out.InstanceProfile.Arn)}}
	for _, role := range out.InstanceProfile.Roles {
		a.Fields = append(a.Fields, Field{Name: "role", Value: aws.ToString(role.RoleName)})
	}
	return a, nil
}

func (t *instanceProfileTask) Render(ctx context.Context, r *run, a *actual, _ []Change) (*actual, error) {
	if a == nil {
		out, err := r.cl.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(t.Name()), Tags: iamTags(t.m.tags(""))})
		if err != nil {
			return nil, err
		}
		a = &actual{ID: t.Name(), Attrs: map[string]string{"arn": aws.ToString(out.InstanceProfile.Arn)}}
	}
	for _, f := range a.Fields {
		if f.Value != t.m.names.Role(t.role) {
			if _, err := r.cl.IAM.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(t.Name()), RoleName: aws.String(f.Value)}); err != nil {
				return nil, err
			}
		}
	}
	if !containsField(a.Fields, "role", t.m.names.Role(t.role)) {
		if _, err := r.cl.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(t.Name()), RoleName: aws.String(t.m.names.Role(t.role))}); err != nil {
			return nil, err
		}
	}
	return &actual{ID: a.ID, Attrs: a.Attrs, Fields: t.Desired(r)}, nil
}

func containsField(fields []Field, name, value string) bool {
	for _, f := range fields {
		if f.Name == name && f.Value == value {
			return true
		}
	}
	return false
}
