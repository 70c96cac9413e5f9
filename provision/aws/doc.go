// Package aws creates kubedirect clusters on AWS with aws-sdk-go-v2, the way kOps does: every resource
// (VPC, subnets, internet gateway, route table, security groups and their rules, IAM roles and instance
// profiles, key pair, the API's network load balancers (internet-facing for the operator, internal
// for the nodes), launch templates and auto scaling groups, and the state-store objects) is a task with Find (nil when absent), a comparison of key fields, Render
// (create, or change in place, or refuse a change that needs replacement) and a tag-driven Delete.
// Tasks run in dependency order and retry on AWS's eventual consistency and throttling; a retried
// Render looks the resource up again first. Tags are set when a resource is created, so create resumes
// after a partial failure and plans nothing on an applied cluster.
//
// Everything is tagged kubedirect.io/cluster=<name> and kubernetes.io/cluster/<name>=owned; Names builds
// every name. The state store (s3://bucket/prefix/<cluster>/) keeps the spec as applied (spec.yaml), the
// cluster state (state.json: images chosen, resource IDs), the CA (pki/), the bootstrap token and the
// CA hash workers pin (bootstrap/), and the admin kubeconfig the control plane publishes (kubeconfig/).
//
// Nodes boot from a user-data script (templates/userdata.sh.tmpl): containerd, then kubelet and kubeadm
// of the spec's version from the upstream Kubernetes packages; the control plane runs kubeadm init with
// the CA from the state store and without kube-proxy, and publishes the admin kubeconfig; workers join
// through the API's load balancer with the token from the state store; in dsr mode every node turns off
// its own source/destination check. The node roles may read only what they need (see model.policy).
//
// The provider talks to AWS only through the narrow interfaces of api.go (which the SDK clients satisfy),
// so tests use the stateful fakes of package fake, and PlanOffline needs no credentials at all. The
// same scenario suite also runs the real SDK clients against moto, an AWS emulator, with IAM enforced.
// RequiredActions lists the IAM actions the operator's identity needs; UserPolicy renders them.
package aws
