// Package aws creates kubedirect clusters on AWS with aws-sdk-go-v2, the way kOps does: every resource
// (VPC, subnets, internet gateway, route table, security groups and their rules, IAM roles and instance
// profiles, key pair, the API's network load balancer, launch templates and auto scaling groups, and the
// state-store objects) is a task with Find (nil when absent), a comparison of key fields, Render
// (create, or change in place, or refuse a change that needs replacement) and a tag-driven Delete.
// Tasks run in dependency order and retry on AWS's eventual consistency, so create resumes after a
// partial failure and plans nothing on an applied cluster.
//
// Everything is tagged kubedirect.io/cluster=<name> and kubernetes.io/cluster/<name>=owned; Names builds
// every name. The state store (s3://bucket/prefix/<cluster>/) keeps the spec as applied, the cluster
// state, the CA, the bootstrap token and the admin kubeconfig the control plane publishes.
//
// The provider talks to AWS only through the narrow interfaces of api.go (which the SDK clients satisfy),
// so tests use the stateful fakes of package fake, and PlanOffline needs no credentials at all.
package aws
