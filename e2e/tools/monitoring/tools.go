//go:build tools

// Wrapper module: controller-gen from sigs.k8s.io/controller-tools, and the
// prometheus-operator API types it generates the monitoring.coreos.com CRDs from (the
// way prometheus-operator generates its own), so that the chart's ServiceMonitor and
// PrometheusRule can be dry-run by the real API server.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
