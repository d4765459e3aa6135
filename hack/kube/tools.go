//go:build tools

// Package kube pins the commands hack/kube/build.sh builds: the real
// kube-apiserver and kubectl of Kubernetes v1.37.2, and etcd v3.7.
package kube

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
