package fake

import (
	"context"
	"net/url"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
)

type iamState struct {
	roles    map[string]*types.Role
	policies map[string]map[string]string // role -> policy name -> document
	profiles map[string]*types.InstanceProfile
}

func newIAMState() *iamState {
	return &iamState{roles: map[string]*types.Role{}, policies: map[string]map[string]string{}, profiles: map[string]*types.InstanceProfile{}}
}

func iamTagMap(tags []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func (s *iamState) tagged(key, value string) []string {
	var out []string
	for name, r := range s.roles {
		if tagsMatch(iamTagMap(r.Tags), key, value) {
			out = append(out, "IAMRole "+name)
		}
	}
	for name, p := range s.profiles {
		if tagsMatch(iamTagMap(p.Tags), key, value) {
			out = append(out, "InstanceProfile "+name)
		}
	}
	return out
}

func (s *iamState) count(kind string) (int, bool) {
	switch kind {
	case "IAMRole":
		return len(s.roles), true
	case "InstanceProfile":
		return len(s.profiles), true
	}
	return 0, false
}

func (s *iamState) profileExists(name string) bool { return s.profiles[name] != nil }

// IAM is the fake's IAM API.
type IAM struct{ c *Cloud }

// IAM returns the account's IAM API.
func (c *Cloud) IAM() *IAM { return &IAM{c} }

func noRole(name string) error {
	return apiError("NoSuchEntity", "The role with name %s cannot be found.", name)
}

// GetRole returns a role with its URL-encoded trust policy, as IAM does.
func (f *IAM) GetRole(_ context.Context, in *iam.GetRoleInput, _ ...func(*iam.Options)) (*iam.GetRoleOutput, error) {
	err := f.c.begin("GetRole")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	r := f.c.iam.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noRole(aws.ToString(in.RoleName))
	}
	cp := *r
	return &iam.GetRoleOutput{Role: &cp}, nil
}

// CreateRole refuses a duplicate name.
func (f *IAM) CreateRole(_ context.Context, in *iam.CreateRoleInput, _ ...func(*iam.Options)) (*iam.CreateRoleOutput, error) {
	err := f.c.begin("CreateRole")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.RoleName)
	if f.c.iam.roles[name] != nil {
		return nil, apiError("EntityAlreadyExists", "Role with name %s already exists.", name)
	}
	r := &types.Role{RoleName: in.RoleName, RoleId: aws.String(f.c.id("AROA")), Arn: aws.String("arn:aws:iam::123456789012:role/" + name),
		AssumeRolePolicyDocument: aws.String(url.QueryEscape(aws.ToString(in.AssumeRolePolicyDocument))), Description: in.Description, Tags: in.Tags}
	f.c.iam.roles[name] = r
	return &iam.CreateRoleOutput{Role: r}, nil
}

// DeleteRole refuses while the role has inline policies or is in an instance profile.
func (f *IAM) DeleteRole(_ context.Context, in *iam.DeleteRoleInput, _ ...func(*iam.Options)) (*iam.DeleteRoleOutput, error) {
	err := f.c.begin("DeleteRole")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.RoleName)
	if f.c.iam.roles[name] == nil {
		return nil, noRole(name)
	}
	if len(f.c.iam.policies[name]) > 0 {
		return nil, apiError("DeleteConflict", "Cannot delete entity, must delete policies first.")
	}
	for _, p := range f.c.iam.profiles {
		for _, r := range p.Roles {
			if aws.ToString(r.RoleName) == name {
				return nil, apiError("DeleteConflict", "Cannot delete entity, must remove roles from instance profile first.")
			}
		}
	}
	delete(f.c.iam.roles, name)
	return &iam.DeleteRoleOutput{}, nil
}

// GetRolePolicy returns an inline policy, URL-encoded.
func (f *IAM) GetRolePolicy(_ context.Context, in *iam.GetRolePolicyInput, _ ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error) {
	err := f.c.begin("GetRolePolicy")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	doc, ok := f.c.iam.policies[aws.ToString(in.RoleName)][aws.ToString(in.PolicyName)]
	if !ok {
		return nil, apiError("NoSuchEntity", "The role policy with name %s cannot be found.", aws.ToString(in.PolicyName))
	}
	return &iam.GetRolePolicyOutput{RoleName: in.RoleName, PolicyName: in.PolicyName, PolicyDocument: aws.String(url.QueryEscape(doc))}, nil
}

// PutRolePolicy creates or replaces an inline policy.
func (f *IAM) PutRolePolicy(_ context.Context, in *iam.PutRolePolicyInput, _ ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error) {
	err := f.c.begin("PutRolePolicy")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.RoleName)
	if f.c.iam.roles[name] == nil {
		return nil, noRole(name)
	}
	if f.c.iam.policies[name] == nil {
		f.c.iam.policies[name] = map[string]string{}
	}
	f.c.iam.policies[name][aws.ToString(in.PolicyName)] = aws.ToString(in.PolicyDocument)
	return &iam.PutRolePolicyOutput{}, nil
}

// ListRolePolicies lists a role's inline policies.
func (f *IAM) ListRolePolicies(_ context.Context, in *iam.ListRolePoliciesInput, _ ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error) {
	err := f.c.begin("ListRolePolicies")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.RoleName)
	if f.c.iam.roles[name] == nil {
		return nil, noRole(name)
	}
	var names []string
	for p := range f.c.iam.policies[name] {
		names = append(names, p)
	}
	sort.Strings(names)
	return &iam.ListRolePoliciesOutput{PolicyNames: names}, nil
}

// DeleteRolePolicy removes an inline policy.
func (f *IAM) DeleteRolePolicy(_ context.Context, in *iam.DeleteRolePolicyInput, _ ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error) {
	err := f.c.begin("DeleteRolePolicy")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	delete(f.c.iam.policies[aws.ToString(in.RoleName)], aws.ToString(in.PolicyName))
	return &iam.DeleteRolePolicyOutput{}, nil
}

// GetInstanceProfile returns a profile with its roles.
func (f *IAM) GetInstanceProfile(_ context.Context, in *iam.GetInstanceProfileInput, _ ...func(*iam.Options)) (*iam.GetInstanceProfileOutput, error) {
	err := f.c.begin("GetInstanceProfile")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	p := f.c.iam.profiles[aws.ToString(in.InstanceProfileName)]
	if p == nil {
		return nil, apiError("NoSuchEntity", "Instance Profile %s cannot be found.", aws.ToString(in.InstanceProfileName))
	}
	cp := *p
	cp.Roles = append([]types.Role(nil), p.Roles...)
	return &iam.GetInstanceProfileOutput{InstanceProfile: &cp}, nil
}

// CreateInstanceProfile refuses a duplicate name.
func (f *IAM) CreateInstanceProfile(_ context.Context, in *iam.CreateInstanceProfileInput, _ ...func(*iam.Options)) (*iam.CreateInstanceProfileOutput, error) {
	err := f.c.begin("CreateInstanceProfile")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.InstanceProfileName)
	if f.c.iam.profiles[name] != nil {
		return nil, apiError("EntityAlreadyExists", "Instance Profile %s already exists.", name)
	}
	p := &types.InstanceProfile{InstanceProfileName: in.InstanceProfileName, Arn: aws.String("arn:aws:iam::123456789012:instance-profile/" + name), Tags: in.Tags}
	f.c.iam.profiles[name] = p
	return &iam.CreateInstanceProfileOutput{InstanceProfile: p}, nil
}

// AddRoleToInstanceProfile allows one role per profile, as IAM does.
func (f *IAM) AddRoleToInstanceProfile(_ context.Context, in *iam.AddRoleToInstanceProfileInput, _ ...func(*iam.Options)) (*iam.AddRoleToInstanceProfileOutput, error) {
	err := f.c.begin("AddRoleToInstanceProfile")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	p := f.c.iam.profiles[aws.ToString(in.InstanceProfileName)]
	r := f.c.iam.roles[aws.ToString(in.RoleName)]
	if p == nil || r == nil {
		return nil, apiError("NoSuchEntity", "profile %s or role %s cannot be found", aws.ToString(in.InstanceProfileName), aws.ToString(in.RoleName))
	}
	if len(p.Roles) > 0 {
		return nil, apiError("LimitExceeded", "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1")
	}
	p.Roles = append(p.Roles, *r)
	return &iam.AddRoleToInstanceProfileOutput{}, nil
}

// RemoveRoleFromInstanceProfile takes a role out of a profile.
func (f *IAM) RemoveRoleFromInstanceProfile(_ context.Context, in *iam.RemoveRoleFromInstanceProfileInput, _ ...func(*iam.Options)) (*iam.RemoveRoleFromInstanceProfileOutput, error) {
	err := f.c.begin("RemoveRoleFromInstanceProfile")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	p := f.c.iam.profiles[aws.ToString(in.InstanceProfileName)]
	if p == nil {
		return nil, apiError("NoSuchEntity", "Instance Profile %s cannot be found.", aws.ToString(in.InstanceProfileName))
	}
	var keep []types.Role
	for _, r := range p.Roles {
		if aws.ToString(r.RoleName) != aws.ToString(in.RoleName) {
			keep = append(keep, r)
		}
	}
	p.Roles = keep
	return &iam.RemoveRoleFromInstanceProfileOutput{}, nil
}

// DeleteInstanceProfile refuses while the profile has a role.
func (f *IAM) DeleteInstanceProfile(_ context.Context, in *iam.DeleteInstanceProfileInput, _ ...func(*iam.Options)) (*iam.DeleteInstanceProfileOutput, error) {
	err := f.c.begin("DeleteInstanceProfile")
	defer f.c.end()
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.InstanceProfileName)
	p := f.c.iam.profiles[name]
	if p == nil {
		return nil, apiError("NoSuchEntity", "Instance Profile %s cannot be found.", name)
	}
	if len(p.Roles) > 0 {
		return nil, apiError("DeleteConflict", "Cannot delete entity, must remove roles from instance profile first.")
	}
	delete(f.c.iam.profiles, name)
	return &iam.DeleteInstanceProfileOutput{}, nil
}
