package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"k8s.io/apimachinery/pkg/util/wait"
)

// JoinMode is how a node becomes part of the cluster.
type JoinMode string

// Join modes.
const (
	// ModeInit: the first control-plane instance runs kubeadm init.
	ModeInit JoinMode = "init"
	// ModeJoinControlPlane: every other control-plane instance, at create or when the auto scaling
	// group replaces one, runs kubeadm join --control-plane.
	ModeJoinControlPlane JoinMode = "join-control-plane"
	// ModeJoin: workers run kubeadm join.
	ModeJoin JoinMode = "join"
)

// Defaults of Node's waits for the initialising control plane.
const (
	defaultPollInterval = 10 * time.Second
	// kubeadm init with image pulls takes a few minutes; a control plane that has not finished
	// in 30 is not going to.
	defaultInitTimeout = 30 * time.Minute
)

// initRecord is the content of FileInitLock and FileInitialised.
type initRecord struct {
	Instance string    `json:"instance"`
	Time     time.Time `json:"time"`
}

// ControlPlaneMode decides whether this control-plane instance initialises the cluster or joins it.
// The cluster marker (FileInitialised) means join. Without it the instances race for FileInitLock
// with a conditional write; the winner initialises (also when it is this instance, retrying after a
// reboot), the others wait for the marker and then join.
func (n *Node) ControlPlaneMode(ctx context.Context, instance string) (JoinMode, error) {
	n.defaults()
	st := store{n.S3, n.Names}
	if _, err := st.get(ctx, FileInitialised); err == nil {
		return ModeJoinControlPlane, nil
	} else if !errors.Is(err, errNoObject) {
		return "", fmt.Errorf("read cluster marker: %w", err)
	}
	rec, _ := json.Marshal(initRecord{Instance: instance, Time: time.Now().UTC()})
	_, err := n.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(n.Names.Bucket()), Key: aws.String(n.Names.StateKey(FileInitLock)),
		Body: bytes.NewReader(rec), IfNoneMatch: aws.String("*"),
	})
	if err == nil {
		n.Log.Info("this instance initialises the cluster", "lock", n.Names.StateStore()+FileInitLock)
		return ModeInit, nil
	}
	if !isCode(err, "PreconditionFailed", "ConditionalRequestConflict") {
		return "", fmt.Errorf("take init lock: %w", err)
	}
	holder := st.initRecord(ctx, FileInitLock)
	if holder.Instance == instance {
		n.Log.Info("this instance took the init lock before and initialises again")
		return ModeInit, nil
	}
	n.Log.Info("waiting for the initialising control plane", "instance", holder.Instance)
	err = wait.PollUntilContextTimeout(ctx, n.PollInterval, n.InitTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := st.get(ctx, FileInitialised)
		if errors.Is(err, errNoObject) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return "", fmt.Errorf("wait for %s (since %s) to initialise the cluster: %w; if it is gone, delete %s%s", holder.Instance, holder.Time.Format(time.RFC3339), err, n.Names.StateStore(), FileInitLock)
	}
	return ModeJoinControlPlane, nil
}

// MarkInitialised writes the cluster marker once kubeadm init has succeeded.
func (n *Node) MarkInitialised(ctx context.Context, instance string) error {
	rec, _ := json.Marshal(initRecord{Instance: instance, Time: time.Now().UTC()})
	if err := (store{n.S3, n.Names}).put(ctx, FileInitialised, rec); err != nil {
		return fmt.Errorf("mark cluster initialised: %w", err)
	}
	return nil
}

// initRecord reads a lock or marker; an unreadable one has no instance.
func (s store) initRecord(ctx context.Context, file string) initRecord {
	var r initRecord
	if b, err := s.get(ctx, file); err == nil {
		_ = json.Unmarshal(b, &r)
	}
	return r
}
